/*
 * peer.h: what the C peers (uv-echo.c, event-echo.c) share, so that both keep
 * the chapters' command line in one place: -H, -p (0 allowed), -q, -v, -h,
 * exit 2 on a usage error; and the chapters' start-up: the descriptor limit
 * raised to the hard limit, SIGPIPE ignored. Also the log's address format.
 * Each peer includes it once; everything here is static.
 */
#ifndef PEER_H
#define PEER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct peer_options {
    const char *host;
    const char *port;
    int verbosity; /* 0 quiet, 1 normal, 2 verbose */
};

/* Parses the command line (exiting 0 after -h, 2 on a usage error), raises
 * the soft descriptor limit to the hard one and ignores SIGPIPE. */
static struct peer_options peer_start(int argc, char **argv, const char *name)
{
    struct peer_options options = {"127.0.0.1", "65432", 1};
    char usage[512];
    snprintf(usage, sizeof usage,
             "usage: %s [-H HOST] [-p PORT] [-q | -v]\n"
             "  -H HOST  address to listen on (default 127.0.0.1)\n"
             "  -p PORT  0-65535 (default 65432; 0 lets the kernel choose)\n"
             "  -q       quiet: log nothing per connection\n"
             "  -v       verbose: also log every echo\n",
             name);
    int opt;
    while ((opt = getopt(argc, argv, "H:p:qvh")) != -1) {
        switch (opt) {
        case 'H': options.host = optarg; break;
        case 'p': options.port = optarg; break;
        case 'q': options.verbosity = 0; break;
        case 'v': options.verbosity = 2; break;
        case 'h': fputs(usage, stdout); exit(0);
        default: fputs(usage, stderr); exit(2);
        }
    }
    char *end;
    long port = strtol(options.port, &end, 10);
    if (optind != argc || *options.port == '\0' || *end || port < 0 || port > 65535) {
        fprintf(stderr, "%s: bad port or argument\n%s", name, usage);
        exit(2);
    }
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    signal(SIGPIPE, SIG_IGN);
    return options;
}

/* "127.0.0.1:5000" or "[::1]:5000", as the chapters log addresses. */
static void peer_format_address(const struct sockaddr *sa, char *out, size_t size)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, size, "[%s]:%d", ip, ntohs(in6->sin6_port));
    } else {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, size, "%s:%d", ip, ntohs(in->sin_port));
    }
}

#endif

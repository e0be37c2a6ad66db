#!/usr/bin/env python3
"""selectors-echo: the classic Python `selectors` echo server, done right.

A peer the benchmarks compare the chapters with (bench/README.md). The
well-known example calls a *blocking* sendall() on a non-blocking socket: a
slow reader makes it raise BlockingIOError and bytes are lost. This one keeps
an output buffer per connection, sends only what the kernel takes, waits for
EVENT_WRITE for the rest, and stops reading at OUTPUT_CAP unsent bytes
(backpressure), like the chapters. It keeps their command line and ready line
(-H, -p, -q, -v; "listening on ADDR:PORT"; exit 0 on SIGTERM).
"""

import errno
import getopt
import resource
import selectors
import signal
import socket
import sys
import time

BUFFER_SIZE = 64 * 1024  # most one recv() takes, like the chapters
OUTPUT_CAP = 64 * 1024  # most unsent output a connection may have

USAGE = """usage: selectors-echo.py [-H HOST] [-p PORT] [-q | -v]
  -H HOST  address to listen on (default 127.0.0.1)
  -p PORT  0-65535 (default 65432; 0 lets the kernel choose)
  -q       quiet: log nothing per connection
  -v       verbose: also log every echo
"""

verbosity = 1
sel = selectors.DefaultSelector()


def log(line):
    print(line, flush=True)


def address_text(addr):
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Conn:
    __slots__ = ("sock", "peer", "out", "eof", "events")

    def __init__(self, sock, peer):
        self.sock = sock
        self.peer = peer
        self.out = bytearray()  # received, not yet sent back
        self.eof = False  # the client has shut down its sending side
        self.events = selectors.EVENT_READ

    def want(self, events):
        if events != self.events:
            self.events = events
            sel.modify(self.sock, events, self)

    def close(self):
        sel.unregister(self.sock)
        self.sock.close()
        if verbosity >= 1:
            log(f"closed connection from {self.peer}")

    def on_readable(self):
        try:
            data = self.sock.recv(BUFFER_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.eof = True
            if not self.out:
                self.close()
            else:
                self.want(selectors.EVENT_WRITE)
            return
        if verbosity >= 2:
            log(f"echoed {len(data)} bytes to {self.peer}")
        if not self.out:  # the fast path: send at once, keep only the rest
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close()
                return
            if sent == len(data):
                return
            self.out += data[sent:]
        else:
            self.out += data
        # Wait for room; stop reading while the output is at the cap.
        self.want(selectors.EVENT_WRITE if len(self.out) >= OUTPUT_CAP
                  else selectors.EVENT_READ | selectors.EVENT_WRITE)

    def on_writable(self):
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        del self.out[:sent]
        if self.out:
            if len(self.out) < OUTPUT_CAP and not self.eof:
                self.want(selectors.EVENT_READ | selectors.EVENT_WRITE)
        elif self.eof:
            self.close()  # everything echoed after the client's EOF
        else:
            self.want(selectors.EVENT_READ)


def main(argv):
    global verbosity
    host, port = "127.0.0.1", "65432"
    try:
        opts, args = getopt.getopt(argv, "H:p:qvh")
    except getopt.GetoptError as e:
        sys.stderr.write(f"selectors-echo: {e}\n{USAGE}")
        return 2
    for o, a in opts:
        if o == "-H":
            host = a
        elif o == "-p":
            port = a
        elif o == "-q":
            verbosity = 0
        elif o == "-v":
            verbosity = 2
        elif o == "-h":
            sys.stdout.write(USAGE)
            return 0
    if args or not port.isdigit() or int(port) > 65535:
        sys.stderr.write(f"selectors-echo: bad port or argument\n{USAGE}")
        return 2

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    try:
        info = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM,
                                  flags=socket.AI_PASSIVE)[0]
        lsock = socket.socket(info[0], socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(info[4])
        lsock.listen(socket.SOMAXCONN)
    except OSError as e:
        sys.stderr.write(f"selectors-echo: listen on {host}:{port}: {e.strerror or e}\n")
        return 1
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ, None)

    # A signal only writes a byte to this pipe; the loop sees it like any
    # other event, so a signal at any moment stops the server cleanly.
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda signum, frame: None)
    sel.register(wake_r, selectors.EVENT_READ, "wake")

    log(f"listening on {address_text(lsock.getsockname())}")
    paused_until = None  # out of descriptors: accepting pauses for 100 ms
    running = True
    while running:
        timeout = None
        if paused_until is not None:
            timeout = max(0.0, paused_until - time.monotonic())
            if timeout == 0.0:
                sel.register(lsock, selectors.EVENT_READ, None)
                paused_until = None
                timeout = None
        for key, mask in sel.select(timeout):
            conn = key.data
            if conn is None:
                for _ in range(64):  # accept what is waiting, boundedly
                    try:
                        sock, addr = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:
                        if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                            sys.stderr.write(f"selectors-echo: accept: {e.strerror}\n")
                            sel.unregister(lsock)
                            paused_until = time.monotonic() + 0.1
                        break  # ECONNABORTED and the like: try again later
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    c = Conn(sock, address_text(addr))
                    sel.register(sock, selectors.EVENT_READ, c)
                    if verbosity >= 1:
                        log(f"accepted connection from {c.peer}")
            elif conn == "wake":
                running = False
                break
            else:
                if mask & selectors.EVENT_READ and conn.events & selectors.EVENT_READ:
                    conn.on_readable()
                if mask & selectors.EVENT_WRITE and conn.sock.fileno() != -1:
                    conn.on_writable()

    log("shutting down")
    for key in list(sel.get_map().values()):
        if isinstance(key.data, Conn):
            key.data.sock.close()
    sel.close()
    lsock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

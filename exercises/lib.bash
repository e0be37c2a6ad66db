# Shared by exercises/run, exercises/prove and mutants/run: reading the
# header of a planted bug or of an exercise, and making a chapter's copy.
#
# A planted bug, mutants/NN-chapter/NAME.patch, starts with a header of
# `Key: value` lines (Title, Symptom, Tests, Hint-where, Hint-man, Fix), then
# the diff. A build exercise's exercises/NAME/exercise is a header alone.
# A value goes on over the lines after it that start with two spaces.

# header_field FILE KEY: prints KEY's value, a continued value one line per
# line of the file (without the two spaces). Fails if FILE has no KEY.
header_field() {
    local file=$1 key=$2 line in_key=false found=1
    while IFS= read -r line || [[ -n $line ]]; do
        if [[ $line == "  "* ]]; then
            # A continuation line: part of the key before it.
            if $in_key; then printf '%s\n' "${line#  }"; fi
        elif [[ $line =~ ^([A-Za-z][A-Za-z0-9-]*):\ ?(.*)$ ]]; then
            in_key=false
            if [[ ${BASH_REMATCH[1]} == "$key" ]]; then
                in_key=true
                found=0
                printf '%s\n' "${BASH_REMATCH[2]}"
            fi
        else
            break # the end of the header: a blank line, or the diff
        fi
    done <"$file"
    return "$found"
}

# copy_chapter CHAPTER_DIR DIR: a fresh copy of the chapter's sources in DIR
# (which must not exist yet), without what a build made there.
copy_chapter() {
    local chapter=$1 dir=$2
    mkdir -p "$(dirname "$dir")"
    cp -R "$chapter" "$dir"
    make -s -C "$dir" clean >/dev/null
}

# apply_patch PATCH DIR: applies a patch made to be applied with `patch -p1`
# from the repository's root (paths like a/04-epoll/server.c) to the copy of
# that chapter in DIR. No backup files: an .orig would hold the original.
apply_patch() {
    patch --quiet --forward --no-backup-if-mismatch --reject-file=- \
        -p2 -d "$2" <"$1"
}

# renamed_patches MUTANTS CHAPTER OLD: the patch (one a line) that a bug
# hunt's old name OLD stands for now, from MUTANTS/renamed; CHAPTER ("04",
# "04-epoll", or empty: any) narrows it to one chapter. Prints nothing for a
# name that was never renamed.
renamed_patches() {
    local mutants=$1 chapter=$2 old=$3 from to
    [[ -f $mutants/renamed ]] || return 0
    while read -r from to; do
        [[ -n $from && $from != "#"* ]] || continue
        [[ ${from##*/} == "$old" && ${from%/*} == "$chapter"* ]] || continue
        echo "$mutants/${from%/*}/$to.patch"
    done <"$mutants/renamed"
}

# old_names MUTANTS PATCH: the names PATCH had before (one a line; none if
# it was never renamed).
old_names() {
    local mutants=$1 patch=$2 from to chapter
    [[ -f $mutants/renamed ]] || return 0
    chapter=$(basename "$(dirname "$patch")")
    while read -r from to; do
        [[ -n $from && $from != "#"* ]] || continue
        [[ $from == "$chapter/"* && $to == "$(basename "$patch" .patch)" ]] && echo "${from##*/}"
    done <"$mutants/renamed"
    return 0
}

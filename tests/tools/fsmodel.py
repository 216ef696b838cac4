#!/usr/bin/env python3
"""fsmodel.py MOUNT MODEL NOPS SEED - random file-system operations, the same on the mount
and on a local directory (the model), with the trees compared after every one.

The operations draw from a few names in a few directories, so that they collide: write,
append, truncate, rename of files (onto existing names too), rename of directories, unlink,
mkdir, rmdir, symlink, chmod, and utime to a fixed time; and through descriptors kept open
across the others (so that files are renamed, unlinked and replaced while open): open
(read-only, read-write, creating, appending, truncating), pwrite, pread, fstat, ftruncate,
close. Every operation must give the same result on both (success, or the same errno;
pread the same bytes, fstat the same size, mode and link count), and afterwards both trees
must hold the same names, types, permission bits, file contents, link targets, and the modification times that
utime set on files (times from writes differ between the two by nature; a directory's
changes with its entries locally, which objfs does not store, as s3fs does not). Run with a short settle delay, uploads, renames and deletes commit while the
next operations look the names up; with a long one, everything stays pending. Exit 0 when
the mount matched the model all the way, 1 with the operation and the last few before it."""
import errno
import hashlib
import os
import random
import sys

NAMES = ["a", "b", "c", "d a", "\u00e9"]
DIRS = ["", "x", "y", "x/z"]
MORE_DIRS = ["w", "y/v"]


SET_TIMES = 1000000000  # utime sets times below 1e9 + 1000: only those are compared


def attrs(full, with_mtime=True):
    st = os.lstat(full)
    mtime = " mtime %d" % st.st_mtime if with_mtime and st.st_mtime < SET_TIMES + 1000 else ""
    return " mode %o%s" % (st.st_mode & 0o7777, mtime)


def snapshot(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            full = os.path.join(dirpath, d)
            key = os.path.normpath(os.path.join(rel, d))
            out[key] = "link:" + os.readlink(full) if os.path.islink(full) else "dir" + attrs(full, False)
        for f in filenames:
            full = os.path.join(dirpath, f)
            key = os.path.normpath(os.path.join(rel, f))
            try:
                if os.path.islink(full):
                    out[key] = "link:" + os.readlink(full)
                else:
                    with open(full, "rb") as fh:
                        out[key] = hashlib.md5(fh.read()).hexdigest() + attrs(full)
            except OSError as e:
                raise OSError(e.errno, "%s: %s" % (key, e.strerror)) from e
    return out


MAX_OPEN = 3
OPEN_FLAGS = [("r", os.O_RDONLY), ("rw", os.O_RDWR), ("rw+creat", os.O_RDWR | os.O_CREAT),
              ("rw+append", os.O_RDWR | os.O_APPEND), ("w+trunc", os.O_WRONLY | os.O_TRUNC)]


class Ops:
    def __init__(self, rnd):
        self.rnd = rnd
        self.fds = {}  # root -> open descriptors, the same files in the same order
        self.out = {}  # root -> what the last operation read (pread, fstat)

    def nopen(self):
        return min((len(v) for v in self.fds.values()), default=0)

    def close_all(self):
        for fds in self.fds.values():
            for fd in fds:
                os.close(fd)
        self.fds = {}

    def path(self):
        return os.path.join(self.rnd.choice(DIRS), self.rnd.choice(NAMES))

    def next(self):
        """One operation: (description, function of a root directory)."""
        rnd = self.rnd
        kinds = ["write", "write", "append", "truncate", "rename", "rename", "renamedir",
                 "unlink", "mkdir", "rmdir", "symlink", "chmod", "utime"]
        if self.nopen() < MAX_OPEN:
            kinds += ["open", "open"]
        if self.nopen():
            kinds += ["pwrite", "pwrite", "pread", "pread", "fstat", "ftruncate", "close"]
        kind = rnd.choice(kinds)
        p, q = self.path(), self.path()
        data = os.urandom(rnd.choice([0, 10, 5000, 70000]))
        size = rnd.choice([0, 3, 100000])
        target = "target-%d" % rnd.randrange(1000)
        d1 = rnd.choice(DIRS[1:])
        d2 = rnd.choice(DIRS[1:] + MORE_DIRS)
        mode = rnd.choice([0o600, 0o640, 0o644, 0o700, 0o755])
        when = SET_TIMES + rnd.randrange(1000)
        anything = rnd.choice([p, d2])
        fdi = rnd.randrange(self.nopen()) if self.nopen() else 0
        flags_name, flags = rnd.choice(OPEN_FLAGS)
        off = rnd.choice([0, 7, 4096, 70000])
        ops = self

        def open_(r):
            fd = os.open(os.path.join(r, p), flags, 0o644)
            ops.fds.setdefault(r, []).append(fd)

        def pwrite(r):
            os.pwrite(ops.fds[r][fdi], data[:5000], off)

        def pread(r):
            fd = ops.fds[r][fdi]
            try:
                ops.out[r] = hashlib.md5(os.pread(fd, 200000, off)).hexdigest()
            except OSError as e:
                # documented: an open file whose delete has run reads only what is cached
                if e.errno == errno.ESTALE and os.fstat(fd).st_nlink == 0:
                    ops.out[r] = "stale"
                else:
                    raise

        def fstat(r):
            st = os.fstat(ops.fds[r][fdi])
            ops.out[r] = "size %d mode %o nlink %d" % (st.st_size, st.st_mode, st.st_nlink)

        def ftruncate(r):
            os.ftruncate(ops.fds[r][fdi], size)

        def close(r):
            os.close(ops.fds[r].pop(fdi))

        def write(r):
            with open(os.path.join(r, p), "wb") as fh:
                fh.write(data)

        def append(r):
            with open(os.path.join(r, p), "ab") as fh:
                fh.write(data)

        def truncate(r):
            os.truncate(os.path.join(r, p), size)

        def rename(r):
            a, b = os.path.join(r, p), os.path.join(r, q)
            if os.path.isdir(a) or os.path.isdir(b):
                raise OSError(errno.EISDIR, "files only")
            os.rename(a, b)

        def renamedir(r):
            if (d2 + "/").startswith(d1 + "/"):
                raise OSError(errno.EINVAL, "into itself")
            os.rename(os.path.join(r, d1), os.path.join(r, d2))

        def unlink(r):
            os.unlink(os.path.join(r, p))

        def mkdir(r):
            os.mkdir(os.path.join(r, d2))

        def rmdir(r):
            os.rmdir(os.path.join(r, d2))

        def symlink(r):
            os.symlink(target, os.path.join(r, p))

        def chmod(r):
            if os.path.islink(os.path.join(r, anything)):
                raise OSError(errno.EPERM, "links have no mode to change")
            os.chmod(os.path.join(r, anything), mode)

        def utime(r):
            os.utime(os.path.join(r, anything), (when, when), follow_symlinks=False)

        args = {"renamedir": (d1, d2), "mkdir": (d2,), "rmdir": (d2,), "rename": (p, q),
                "chmod": (anything, oct(mode)), "utime": (anything, when),
                "open": (p, flags_name), "pwrite": (fdi, off, min(len(data), 5000)),
                "pread": (fdi, off), "fstat": (fdi,), "ftruncate": (fdi, size), "close": (fdi,)}
        fn = open_ if kind == "open" else locals()[kind]
        return "%s %r" % (kind, args.get(kind, (p,))), fn


def run(root, fn):
    try:
        fn(root)
        return 0
    except OSError as e:
        return e.errno


def main():
    mnt, model, nops, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ops = Ops(random.Random(seed))
    history = []
    for i in range(nops):
        what, fn = ops.next()
        ops.out = {}
        got, want = run(mnt, fn), run(model, fn)
        history.append("%d %s -> %s" % (i, what, errno.errorcode.get(want, want)))
        last = "; ".join(history[-6:])
        if got != want:
            print("op %d %s: the mount gave %s, the model %s (last ops: %s)" % (
                i, what, errno.errorcode.get(got, got), errno.errorcode.get(want, want), last))
            return 1
        if ops.out.get(mnt) != ops.out.get(model) and ops.out.get(mnt) != "stale":
            print("op %d %s: the mount read %s, the model %s (last ops: %s)" % (
                i, what, ops.out.get(mnt), ops.out.get(model), last))
            return 1
        try:
            a, b = snapshot(mnt), snapshot(model)
        except OSError as e:
            print("op %d %s: reading the trees failed: %s (last ops: %s)" % (i, what, e, last))
            return 1
        if a != b:
            diff = ["%r: mount %s, model %s" % (k, a.get(k), b.get(k))
                    for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            print("op %d %s: the trees differ: %s (last ops: %s)" % (i, what, "; ".join(diff), last))
            return 1
    ops.close_all()
    print("%d operations (seed %d): the mount matched the model after each" % (nops, seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A MAP for tests that writes hostile outputs, chosen by the file `_mode` in its input.

Modes (the first word; arguments follow): `link-output` replaces the output folder with a link
to MIS_TEST_SECRET (a folder of "host" files); `link-inside` writes links to it inside the
output, beside a real result; `non-utf8` a file whose name is not UTF-8; `unreadable` a file
nobody may read; `many N` N small files; `sparse N` a sparse file of N bytes; `readonly DEPTH`
a read-only tree (as `cp -a` of a read-only model folder leaves) DEPTH folders deep; `deep N
DEPTH LENGTH` N empty files with names of LENGTH bytes, in DEPTH nested folders with names of
LENGTH bytes (paths longer than the system's PATH_MAX: made through folder descriptors);
`name HEX` a file named by the bytes HEX spells, beside a plain one.
"""

import os
import sys
from pathlib import Path

source = Path(os.environ["MONAI_INPUTPATH"])
target = Path(os.environ["MONAI_OUTPUTPATH"])
secret = Path(os.environ["MIS_TEST_SECRET"])
mode, *args = (source / "_mode").read_text().split()
print(f"output MAP in mode {mode}", flush=True)

if mode == "link-output":
    try:
        target.rmdir()
        target.symlink_to(secret, target_is_directory=True)
        print("output folder replaced by a link", flush=True)
    except OSError as exc:  # a sandbox may hold it in place
        print(f"could not replace the output folder: {exc.strerror}", flush=True)
elif mode == "link-inside":
    (target / "result.txt").write_text("the MAP's own result")
    (target / "passwd").symlink_to(secret / "passwd")
    (target / "series").mkdir()
    (target / "series" / "host").symlink_to(secret, target_is_directory=True)
elif mode == "non-utf8":
    (target / "summary.json").write_text("{}")
    with open(os.path.join(os.fsencode(target), b"mask-\xff\xfe.png"), "wb") as bad:
        bad.write(b"png")
elif mode == "unreadable":
    (target / "summary.json").write_text("{}")
    (target / "locked.bin").write_bytes(b"x" * 1000)
    (target / "locked.bin").chmod(0)
elif mode == "many":
    (target / "series").mkdir()
    for n in range(int(args[0])):
        (target / "series" / f"{n:06d}").write_bytes(b"%d" % n)
elif mode == "sparse":
    with open(target / "volume.raw", "wb") as volume:
        volume.truncate(int(args[0]))
    (target / "summary.json").write_text('{"sparse": true}')
elif mode == "readonly":
    (target / "result.txt").write_text("done")
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(int(args[0])):
        os.mkdir("model", dir_fd=fd)
        child = os.open("model", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(os.open("weights", os.O_WRONLY | os.O_CREAT, 0o444, dir_fd=child))
        if level:
            os.chmod(fd, 0o555)  # the folder above, now filled: read-only from here on
        os.close(fd)
        fd = child
    os.chmod(fd, 0o555)
    os.close(fd)
elif mode == "deep":
    files, depth, length = (int(arg) for arg in args)
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(depth):
        folder = f"{level:03d}".ljust(length, "d")
        os.mkdir(folder, dir_fd=fd)
        child = os.open(folder, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    for n in range(files):
        os.close(os.open(f"{n:05d}".ljust(length, "f"), os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)
elif mode == "name":
    (target / "summary.json").write_text("{}")
    with open(os.path.join(os.fsencode(target), bytes.fromhex(args[0])), "wb") as named:
        named.write(b"data")
else:
    sys.exit(f"unknown mode {mode}")
print("output MAP done", flush=True)

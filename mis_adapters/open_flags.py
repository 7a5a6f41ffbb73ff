"""How MIS opens what someone else could have put in its way: the flags, written once.

Standard library only, so that any adapter may use it (the zip package and the storage both
do). The process backend's supervisor spells its own copy: it runs as a script outside MIS's
packages.
"""

from __future__ import annotations

import os

# A folder, opened never through a link. O_NONBLOCK: a FIFO swapped in does not block the open.
DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# A file MIS makes, with O_WRONLY or O_RDWR: new (O_EXCL: never a file or a link that was
# there first), and never handed down to the processes MIS starts. Its mode is each caller's.
NEW_FILE = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

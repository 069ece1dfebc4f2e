"""Audit lines as auditd 3.0 writes them (``log_format = ENRICHED``; captured on the development
machine and shortened where noted), shared by the parser's and the filter's tests."""

from __future__ import annotations

GS = "\x1d"
"""The separator before auditd's enriched names."""

# An execve of `/bin/echo hello "a b" xxx... é` with a 9000-byte argument: auditd splits the
# long argument into a3[0..2] hex pieces over three EXECVE records (pieces shortened here to
# 3000 bytes each, as hex 6000 characters: the kernel cuts them at ~7500 bytes of record).
LONG = "x" * 9000
_PIECES = [LONG[i : i + 3000].encode().hex().upper() for i in range(0, 9000, 3000)]
EXEC_LONG = [
    "type=SYSCALL msg=audit(1796563300.672:47): arch=c000003e syscall=59 success=yes exit=0 "
    "a0=5625efe330e0 a1=5625efe35988 a2=5625efe359d8 a3=8 items=2 ppid=9296 pid=9340 "
    "auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) "
    'ses=4294967295 comm="echo" exe="/usr/bin/echo" key="t123"'
    f'{GS}ARCH=x86_64 SYSCALL=execve AUID="unset" UID="root" GID="root" EUID="root"',
    "type=BPRM_FCAPS msg=audit(1796563300.672:47): fver=0 fp=0 fi=0 fe=0 "
    "old_pp=000001fffeffffff old_pi=0 old_pe=000001fffeffffff old_pa=0 pp=000001fffeffffff "
    "pi=0 pe=000001fffeffffff pa=0 frootid=0",
    'type=EXECVE msg=audit(1796563300.672:47): argc=5 a0="/bin/echo" a1="hello" a2=612062 '
    f"a3_len=18000 a3[0]={_PIECES[0]}",
    f"type=EXECVE msg=audit(1796563300.672:47):  a3[1]={_PIECES[1]}",
    f"type=EXECVE msg=audit(1796563300.672:47):  a3[2]={_PIECES[2]} a4=C3A9",
    'type=CWD msg=audit(1796563300.672:47): cwd="/tmp/at"',
    'type=PATH msg=audit(1796563300.672:47): item=0 name="/bin/echo" inode=247141 dev=fe:00 '
    "mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 "
    f'cap_fver=0 cap_frootid=0{GS}OUID="root" OGID="root"',
    'type=PATH msg=audit(1796563300.672:47): item=1 name="/lib64/ld-linux-x86-64.so.2" '
    "inode=325835 dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 "
    f'cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0{GS}OUID="root" OGID="root"',
    "type=PROCTITLE msg=audit(1796563300.672:47): proctitle="
    + b"/bin/echo\0hello\0a b\0".hex().upper()
    + "78" * 60,
]

# `cat /etc/shadow` in an interactive session (RAW format: no enriched names), with the
# proctitle hex-encoded because of the NUL between arguments.
EXEC_CAT = [
    "type=SYSCALL msg=audit(1796563400.005:120): arch=c000003e syscall=59 success=yes exit=0 "
    "a0=55d0 a1=55d1 a2=55d2 a3=0 items=2 ppid=4100 pid=4242 auid=1000 uid=1000 gid=1000 "
    'euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="cat" '
    'exe="/usr/bin/cat" subj=unconfined key="exec"',
    'type=EXECVE msg=audit(1796563400.005:120): argc=2 a0="cat" a1="/etc/shadow"',
    'type=CWD msg=audit(1796563400.005:120): cwd="/home/alice"',
    'type=PATH msg=audit(1796563400.005:120): item=0 name="/usr/bin/cat" inode=1 dev=fe:00 '
    "mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL",
    "type=PROCTITLE msg=audit(1796563400.005:120): proctitle=636174002F6574632F736861646F77",
]

# sudo's PAM and command records: one-record events from user space.
SUDO_CMD = (
    "type=USER_CMD msg=audit(1796563500.100:300): pid=5000 uid=1000 auid=1000 ses=3 "
    'subj=unconfined msg=\'cwd="/home/alice" cmd=6C73202D6C61202F726F6F74 exe="/usr/bin/sudo" '
    "terminal=pts/0 res=success'"
    f'{GS}UID="alice" AUID="alice"'
)
SUDO_START = (
    "type=USER_START msg=audit(1796563500.104:301): pid=5000 uid=1000 auid=1000 ses=3 "
    'subj=unconfined msg=\'op=PAM:session_open grantors=pam_limits,pam_unix acct="root" '
    'exe="/usr/bin/sudo" hostname=? addr=? terminal=/dev/pts/0 res=success\''
)

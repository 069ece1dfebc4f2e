"""The auditd parser and joiner: real record shapes, long argv over several EXECVE records,
interleaved events, the prefixes forwarders add, bounds and their counters; nothing raises."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.auditd import parse_fields, parse_line
from parsers.auditd_join import AuditJoiner
from tests.auditd_lines import EXEC_CAT, EXEC_LONG, LONG, SUDO_CMD, SUDO_START


def join(lines: list[str], joiner: AuditJoiner | None = None, now: float = 0.0) -> list[Any]:
    joiner = AuditJoiner() if joiner is None else joiner
    out: list[Any] = []
    for text in lines:
        line = parse_line(text)
        assert line is not None, text
        out.extend(record for record, _ in joiner.add(line, now))
    return out


def test_long_argv_over_three_execve_records_is_joined_field_by_field() -> None:
    (record,) = join(EXEC_LONG)
    info = record["auditd"]
    assert record["time"] == "2026-12-06T13:21:40.672Z"
    assert info["argv"] == ["/bin/echo", "hello", "a b", LONG, "é"]
    assert record["message"] == f"/bin/echo hello a b {LONG} é"
    assert info["type"] == "SYSCALL"
    assert info["serial"] == 47
    assert info["syscall"] == "execve"  # the enriched name
    assert info["success"] is True
    assert info["exit"] == 0
    assert (info["pid"], info["ppid"], info["uid"], info["euid"]) == (9340, 9296, 0, 0)
    assert info["auid"] == 4294967295 and info["ses"] == 4294967295
    assert info["tty"] == "(none)"
    assert (info["comm"], info["exe"], info["cwd"], info["key"]) == (
        "echo", "/usr/bin/echo", "/tmp/at", "t123",
    )  # fmt: skip
    assert info["paths"] == ["/bin/echo", "/lib64/ld-linux-x86-64.so.2"]
    assert info["names"]["auid"] == "unset" and info["names"]["arch"] == "x86_64"
    assert info["records"] == [
        "SYSCALL", "BPRM_FCAPS", "EXECVE", "EXECVE", "EXECVE", "CWD", "PATH", "PATH", "PROCTITLE",
    ]  # fmt: skip


def test_raw_format_syscall_number_and_hex_proctitle() -> None:
    (record,) = join(EXEC_CAT)
    info = record["auditd"]
    assert info["syscall"] == "execve"  # from (arch, number): no enriched names
    assert info["argv"] == ["cat", "/etc/shadow"]
    assert record["message"] == "cat /etc/shadow"
    assert (info["tty"], info["auid"], info["ses"], info["cwd"]) == ("pts0", 1000, 3, "/home/alice")
    assert "names" not in info


def test_proctitle_gives_argv_of_other_syscalls_but_not_of_a_failed_exec() -> None:
    opened = [EXEC_CAT[0].replace("syscall=59", "syscall=257"), *EXEC_CAT[2:]]
    (record,) = join(opened)
    assert record["auditd"]["syscall"] == "257"
    assert record["auditd"]["argv"] == ["cat", "/etc/shadow"]
    assert record["auditd"]["proctitle"] == "cat /etc/shadow"
    failed = [
        EXEC_CAT[0].replace("success=yes exit=0", "success=no exit=-2"),
        *EXEC_CAT[2:4],
        EXEC_CAT[4].replace("636174002F6574632F736861646F77", "7368002D63006361742078"),
    ]
    (record,) = join(failed)
    assert "argv" not in record["auditd"] and record["auditd"]["proctitle"] == "sh -c cat x"
    assert record["message"] == (
        "SYSCALL success=no syscall=execve exe=/usr/bin/cat paths=/usr/bin/cat"
    )


def test_user_space_records_stand_alone_with_their_inner_fields() -> None:
    cmd, start = join([SUDO_CMD, SUDO_START])
    info = cmd["auditd"]
    assert info["type"] == "USER_CMD"
    assert info["cmd"] == "ls -la /root"
    assert (info["exe"], info["terminal"], info["res"], info["cwd"]) == (
        "/usr/bin/sudo", "pts/0", "success", "/home/alice",
    )  # fmt: skip
    assert info["success"] is True and info["uid"] == 1000 and info["pid"] == 5000
    assert info["names"] == {"uid": "alice", "auid": "alice"}
    assert cmd["message"] == "USER_CMD exe=/usr/bin/sudo cmd=ls -la /root res=success"
    assert start["auditd"]["op"] == "PAM:session_open"
    assert start["auditd"]["acct"] == "root"
    assert start["auditd"]["grantors"] == "pam_limits,pam_unix"


def test_interleaved_events_are_joined_and_come_out_in_arrival_order() -> None:
    a, b = EXEC_CAT, EXEC_LONG
    mixed = [a[0], b[0], b[1], a[1], b[2], a[2], b[3], b[4], a[3], b[5], b[6], b[7], b[8], a[4]]
    joiner = AuditJoiner()
    out = join(mixed, joiner)
    # b completes first (its PROCTITLE) but waits behind a, which arrived first.
    assert [r["auditd"]["serial"] for r in out] == [120, 47]
    assert out[0]["auditd"]["argv"] == ["cat", "/etc/shadow"]
    assert out[1]["auditd"]["argv"][3] == LONG
    assert joiner.counts["events"] == 2 and joiner.counts["timeout"] == 0


def test_events_of_different_nodes_with_one_serial_stay_apart() -> None:
    left = ["node=a " + line for line in EXEC_CAT]
    right = ["node=b " + line.replace('"/etc/shadow"', '"/etc/hosts"') for line in EXEC_CAT]
    out = join([x for pair in zip(left, right, strict=True) for x in pair])
    assert [(r["auditd"]["node"], r["auditd"]["argv"][1]) for r in out] == [
        ("a", "/etc/shadow"), ("b", "/etc/hosts"),
    ]  # fmt: skip


def test_forwarded_prefixes() -> None:
    body = 'type=CWD msg=audit(1796563400.005:120): cwd="/root"'
    for text in (
        body,
        "node=worker-1 " + body,
        "Dec  6 13:23:20 worker-1 audisp-syslog: " + body,
        "Dec  6 13:23:20 worker-1 audisp-syslog: node=worker-1 " + body,
        "<14>1 2026-12-06T13:23:20Z worker-1 audit - - - " + body,
    ):
        line = parse_line(text)
        assert line is not None, text
        assert (line.type, line.sec, line.ms, line.serial) == ("CWD", 1796563400, "005", 120)
        assert line.body == 'cwd="/root"'
        assert line.node == ("worker-1" if "node=" in text else None)
    kernel = parse_line(
        "audit: type=1300 audit(1796563400.005:120): arch=c000003e syscall=59 success=yes"
    )
    assert kernel is not None and kernel.type == "SYSCALL"
    assert parse_line("kubelet: type=foo and nothing else") is None
    assert parse_line("no audit here") is None


def test_field_values() -> None:
    fields, names = parse_fields(
        'a="quoted" b=6869 comm=6869 key=6B3101 name=(null) exe="/x y"\x1dUID="root" ARCH=x86_64'
    )
    assert fields == {"a": "quoted", "b": "6869", "comm": "hi", "key": "k1\x01",
                      "name": "(null)", "exe": "/x y"}  # fmt: skip
    assert names == {"uid": "root", "arch": "x86_64"}


def test_eoe_closes_an_event_and_a_late_eoe_is_ignored() -> None:
    joiner = AuditJoiner()
    lines = [line for line in EXEC_CAT if "PROCTITLE" not in line]
    assert join(lines, joiner) == []
    (record,) = join(["type=EOE msg=audit(1796563400.005:120): "], joiner)
    assert record["auditd"]["records"][-1] == "EOE"
    assert join([EXEC_CAT[-1], "type=EOE msg=audit(1796563400.005:120): "], joiner) != []
    assert len(joiner) == 0
    assert joiner.counts["events"] == 2


def test_incomplete_events_wait_for_the_timeout_and_are_counted() -> None:
    joiner = AuditJoiner(timeout=2.0)
    assert join(EXEC_CAT[:3], joiner, now=10.0) == []
    assert joiner.flush(11.9) == []
    ((record, _),) = joiner.flush(12.0)
    assert record["auditd"]["argv"] == ["cat", "/etc/shadow"]
    assert joiner.counts["timeout"] == 1


def test_a_much_later_event_time_closes_older_events() -> None:
    """Reading a file from the start: events are spread in event time, not in arrival time."""
    joiner = AuditJoiner(timeout=2.0)
    out = join([*EXEC_CAT[:3], SUDO_CMD], joiner, now=10.0)  # SUDO_CMD is 100 s later
    assert [r["auditd"]["serial"] for r in out] == [120, 300]
    assert joiner.counts["timeout"] == 1


def test_a_node_whose_clock_is_behind_another_is_not_cut_record_by_record() -> None:
    """Event time moves on per source: node b, 100 s behind node a, has its events joined."""
    ahead = ["node=a " + line for line in EXEC_CAT]  # 1796563400
    behind = ["node=b " + line for line in EXEC_LONG]  # 1796563300
    out = join([*ahead, *behind])
    assert [(r["auditd"]["node"], len(r["auditd"]["records"])) for r in out] == [
        ("a", 5),
        ("b", 9),
    ]


def test_bounds_evict_and_truncate_with_counters() -> None:
    joiner = AuditJoiner(max_events=2, max_records=3)
    lines = [f"type=SYSCALL msg=audit(1796563400.005:{n}): pid={n}" for n in range(5)]
    out = join(lines, joiner)
    assert [r["auditd"]["pid"] for r in out] == [0, 1, 2]
    assert joiner.counts["evicted"] == 3 and len(joiner) == 2
    joiner = AuditJoiner(max_records=3)
    out = join(EXEC_CAT, joiner)
    assert out == []  # PROCTITLE was past the bound: the event waits for its timeout
    assert joiner.counts["truncated_records"] == 2
    ((record, _),) = joiner.close()
    assert record["auditd"]["records"] == ["SYSCALL", "EXECVE", "CWD"]


AUDITISH = st.lists(
    st.sampled_from(
        ["type=", "SYSCALL", "EXECVE", "PROCTITLE", "EOE", "USER_CMD", "1300", " msg=audit(",
         "audit(", "1796563400", ".", "005", ":", "120", "):", " ", "a0=", "a1[0]=", "a1_len=",
         "argc=", "=", '"', "'", "msg='", "6869", "ZZ", "node=", "\x1d", "UID=", "\x00", "é",
         "(null)", "proctitle=", "cmd=", "key=", "syscall=59", "arch=c000003e", "pid=-1"]
    ),
    max_size=40,
).map("".join)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(AUDITISH, st.text(max_size=80)), max_size=12), st.floats(0, 10))
def test_no_input_raises(lines: list[str], step: float) -> None:
    joiner = AuditJoiner(timeout=1.0, max_events=3, max_records=4)
    now = 0.0
    out: list[Any] = []
    for text in lines:
        parse_fields(text)
        line = parse_line(text)
        if line is not None:
            out.extend(joiner.add(line, now, stream=len(text) % 2))
        now += step
        out.extend(joiner.flush(now))
    out.extend(joiner.close())
    for record, _ in out:
        assert isinstance(record["message"], str)
        assert record["time"].endswith("Z")
        assert isinstance(record["auditd"]["serial"], int)


def test_numbers_longer_than_int_takes_do_not_raise() -> None:
    """int() refuses more than 4,300 digits: such an argc or pid is left out, nothing raises."""
    huge = "9" * 5000
    syscall = EXEC_CAT[0].replace("pid=4242", f"pid={huge}")
    execve = f'type=EXECVE msg=audit(1796563400.005:120): argc={huge} a0="cat" a1="/etc/shadow"'
    lines = [parse_line(text) for text in (syscall, execve)]
    joiner = AuditJoiner()
    [(record, _)] = [out for line in lines if line for out in joiner.add(line, 0.0)] + [
        *joiner.close()
    ]
    info = record["auditd"]
    assert "pid" not in info and info["ppid"] == 4100
    assert info["argv"] == ["cat", "/etc/shadow"]


def test_digits_that_int_refuses_in_argv_keys_do_not_raise() -> None:
    """``"²".isdigit()`` is true but int() refuses it: such an index or count is not a number
    (seen raising ValueError before); the numbered arguments still come out."""
    index = 'type=EXECVE msg=audit(1796563400.005:120): argc=2 a0="ls" a4²="x"'
    count = 'type=EXECVE msg=audit(1796563400.005:121): argc=²2 a0="ls" a1="-l"'
    [first] = closed([index])
    [second] = closed([count])
    assert first["auditd"]["argv"] == ["ls"]
    assert second["auditd"]["argv"] == ["ls", "-l"]


def test_plain_argv_fast_path_agrees_with_the_general_parse() -> None:
    """One EXECVE record of quoted arguments takes a split-at-quotes path; anything else (a
    missing or repeated index, a hex argument, a count below the arguments) the general one,
    with the same result a per-field parse gives."""
    head = "type=EXECVE msg=audit(1796563400.005:{}): "
    cases = {
        'argc=3 a0="ls" a1="" a2="x"': ["ls", "", "x"],
        'argc=1 a0="ls" a1="-l"': ["ls"],
        'argc=3 a0="ls" a2="-l"': ["ls", "", "-l"],
        'argc=2 a0="ls" a1=2D6C': ["ls", "-l"],
        'argc=2 a0="ls" a0="-l"': ["-l"],
    }
    for serial, (body, argv) in enumerate(cases.items(), start=200):
        [record] = closed([head.format(serial) + body])
        assert record["auditd"]["argv"] == argv, body


def closed(lines: list[str]) -> list[Any]:
    """The events of ``lines``, the incomplete ones included (what ``close`` releases)."""
    joiner = AuditJoiner()
    return join(lines, joiner) + [record for record, _ in joiner.close()]

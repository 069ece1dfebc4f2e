"""SyslogParser on RFC examples and on real lines: Docker's syslog driver (every format), rsyslog's
forwarding templates (captured from rsyslogd 8.2302), network gear; and its failure modes."""

from __future__ import annotations

import calendar
import math

import pytest

from parsers.syslog import SyslogParser, parse_structured_data
from parsers.timeutil import format_epoch, rfc3339_to_epoch

# 2026-11-29T21:00:05Z: the batch was read five seconds after the lines' stamps.
RECEIVED = calendar.timegm((2026, 11, 29, 21, 0, 5)) + 0.25
RECEIVED_TEXT = "2026-11-29T21:00:05.250000Z"


def parse(line: bytes | str, received: float = RECEIVED, **options: str | None) -> dict:
    frame = line.encode() if isinstance(line, str) else line
    return SyslogParser(**options).parse(frame, received)  # type: ignore[arg-type]


# --- RFC 5424 ------------------------------------------------------------------------------------


def test_rfc5424_example_1_bom_and_nil_structured_data() -> None:
    line = (
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8"
    )
    assert parse(line) == {
        "pri": 34,
        "facility": "auth",
        "severity": "crit",
        "time": "2003-10-11T22:14:15.003Z",
        "host": "mymachine.example.com",
        "ident": "su",
        "msgid": "ID47",
        "message": "'su root' failed for lonvick on /dev/pts/8",
    }


def test_rfc5424_example_2_offset_and_microseconds() -> None:
    line = (
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
        "%% It's time to make the do-nuts."
    )
    record = parse(line)
    assert record == {
        "pri": 165,
        "facility": "local4",
        "severity": "notice",
        "time": "2003-08-24T12:14:15.000003Z",
        "host": "192.0.2.1",
        "ident": "myproc",
        "pid": "8710",
        "message": "%% It's time to make the do-nuts.",
    }


def test_rfc5424_example_3_structured_data_and_bom() -> None:
    sd = '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
    line = (
        f"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 {sd} ".encode()
        + b"\xef\xbb\xbfAn application event log entry..."
    )
    record = parse(line)
    assert record["extradata"] == sd
    assert record["sd"] == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}
    }
    assert record["message"] == "An application event log entry..."
    assert record["ident"] == "evntslog" and record["msgid"] == "ID47" and "pid" not in record


def test_rfc5424_example_4_two_elements_no_message() -> None:
    sd = (
        '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
        '[examplePriority@32473 class="high"]'
    )
    record = parse(f"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 {sd}")
    assert record["extradata"] == sd
    assert record["sd"]["examplePriority@32473"] == {"class": "high"}
    assert record["sd"]["exampleSDID@32473"]["eventID"] == "1011"
    assert record["message"] == ""
    assert "parse_error" not in record


def test_rfc5424_structured_data_escapes() -> None:
    sd = r'[x@1 quote="say \"hi\"" back="a\\b" bracket="[1\]" other="keep\n" empty=""][y k="v"]'
    record = parse(f"<13>1 2026-11-29T21:00:00Z h app 1 - {sd} msg")
    assert record["extradata"] == sd
    assert record["sd"] == {
        "x@1": {
            "quote": 'say "hi"',
            "back": "a\\b",
            "bracket": "[1]",
            "other": "keep\\n",  # RFC 5424 6.3.3: other backslashes stay
            "empty": "",
        },
        "y": {"k": "v"},
    }
    assert record["message"] == "msg"


def test_parse_structured_data_merges_repeated_ids() -> None:
    assert parse_structured_data('[a x="1"][a y="2" x="3"]') == {"a": {"x": "3", "y": "2"}}
    assert parse_structured_data("[origin]") == {"origin": {}}


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-11-29T21:00:00Z", "2026-11-29T21:00:00Z"),  # Docker rfc5424 (no fraction)
        ("2026-11-29T21:00:00.1Z", "2026-11-29T21:00:00.1Z"),
        ("2026-11-29T21:00:00.12Z", "2026-11-29T21:00:00.12Z"),
        ("2026-11-29T21:00:00.123Z", "2026-11-29T21:00:00.123Z"),
        ("2026-11-29T21:00:00.1234Z", "2026-11-29T21:00:00.1234Z"),
        ("2026-11-29T21:00:00.12345Z", "2026-11-29T21:00:00.12345Z"),  # rfc5424micro trims zeros
        ("2026-11-29T21:00:00.123456Z", "2026-11-29T21:00:00.123456Z"),
        ("2026-11-29T21:00:00.123456789Z", "2026-11-29T21:00:00.123456Z"),  # beyond RFC: cut
        ("2026-11-29T21:00:00+00:00", "2026-11-29T21:00:00Z"),
        ("2026-11-29T22:00:00+01:00", "2026-11-29T21:00:00Z"),
        ("2026-11-30T02:30:00.5+05:30", "2026-11-29T21:00:00.5Z"),
        ("2026-11-29T14:00:00.000100-07:00", "2026-11-29T21:00:00.000100Z"),
        ("2026-12-31T23:30:00-01:00", "2027-01-01T00:30:00Z"),
    ],
)
def test_rfc5424_timestamps(stamp: str, expected: str) -> None:
    assert parse(f"<14>1 {stamp} host app - - - hi")["time"] == expected


def test_rfc5424_all_nilvalues_use_received_time() -> None:
    record = parse("<13>1 - - - - - -")
    assert record == {
        "pri": 13,
        "facility": "user",
        "severity": "notice",
        "time": RECEIVED_TEXT,
        "message": "",
    }


def test_rfc5424_multiline_message_and_trailing_newline() -> None:
    record = parse("<11>1 2026-11-29T21:00:00Z h java 7 - - Exception\n\tat Foo.bar(Foo.java:1)\n")
    assert record["message"] == "Exception\n\tat Foo.bar(Foo.java:1)"


# --- Docker's syslog driver: every syslog-format, stdout (daemon.info) and stderr (daemon.err) ---
# Lines as moby's daemon/logger/syslog and srslog's formatters build them, tag {{.ID}}.


def test_docker_default_format_has_no_hostname() -> None:
    # syslog-format unset: srslog UnixFormatter, "<%d>%s %s[%d]: %s" with time.Stamp
    assert parse("<30>Nov 29 21:00:00 5a6e1c8e6f3b[2731]: GET /healthz 200") == {
        "pri": 30,
        "facility": "daemon",
        "severity": "info",
        "time": "2026-11-29T21:00:00Z",
        "ident": "5a6e1c8e6f3b",
        "container_id": "5a6e1c8e6f3b",
        "pid": "2731",
        "message": "GET /healthz 200",
    }
    stderr = parse("<27>Nov  9 21:00:00 5a6e1c8e6f3b[2731]: panic: boom")
    assert stderr["severity"] == "err" and stderr["time"] == "2026-11-09T21:00:00Z"
    assert stderr["message"] == "panic: boom" and "host" not in stderr


def test_docker_rfc3164() -> None:
    record = parse("<27>Nov  9 21:00:00 node-1 5a6e1c8e6f3b[2731]: connection refused")
    assert record["host"] == "node-1"
    assert record["ident"] == record["container_id"] == "5a6e1c8e6f3b"
    assert record["pid"] == "2731" and record["severity"] == "err"
    assert record["message"] == "connection refused"


def test_docker_rfc5424_without_fraction() -> None:
    # time.RFC3339: no fraction; APP-NAME and MSGID are both the tag
    record = parse("<30>1 2026-11-29T22:00:00+01:00 node-1 5a6e1c8e6f3b 2731 5a6e1c8e6f3b - hello")
    assert record == {
        "pri": 30,
        "facility": "daemon",
        "severity": "info",
        "time": "2026-11-29T21:00:00Z",
        "host": "node-1",
        "ident": "5a6e1c8e6f3b",
        "container_id": "5a6e1c8e6f3b",
        "pid": "2731",
        "msgid": "5a6e1c8e6f3b",
        "message": "hello",
    }


def test_docker_rfc5424micro_trims_zeros() -> None:
    # "2006-01-02T15:04:05.999999Z07:00": trailing zeros, and an all-zero fraction, vanish
    trimmed = parse("<27>1 2026-11-29T21:00:00.1234Z node-1 5a6e1c8e6f3b 2731 5a6e1c8e6f3b - x")
    whole = parse("<27>1 2026-11-29T21:00:00Z node-1 5a6e1c8e6f3b 2731 5a6e1c8e6f3b - x")
    assert trimmed["time"] == "2026-11-29T21:00:00.1234Z"
    assert whole["time"] == "2026-11-29T21:00:00Z"
    assert trimmed["severity"] == "err"


def test_docker_full_id_tag() -> None:
    full = "5a6e1c8e6f3b" + "0" * 52
    assert parse(f"<30>Nov 29 21:00:00 {full}[1]: x")["container_id"] == full
    assert "container_id" not in parse("<30>Nov 29 21:00:00 myapp[1]: x")
    assert "container_id" not in parse("<30>Nov 29 21:00:00 5A6E1C8E6F3B[1]: x")


DOCKER_TEMPLATE = r"(?P<image>[^/]+)/(?P<container_name>[^/]+)/(?P<container_id>[0-9a-f]{12})"


def test_tag_pattern_with_docker_tag_template_3164() -> None:
    # tag "{{.ImageName}}/{{.Name}}/{{.ID}}": the tag holds ":" and "/"
    line = "<30>Nov 29 21:00:00 node-1 nginx:1.25/web/5a6e1c8e6f3b[2731]: GET / 200"
    record = parse(line, tag_pattern=DOCKER_TEMPLATE)
    assert record["ident"] == "nginx:1.25/web/5a6e1c8e6f3b"
    assert record["image"] == "nginx:1.25"
    assert record["container_name"] == "web"
    assert record["container_id"] == "5a6e1c8e6f3b"
    assert record["pid"] == "2731" and record["message"] == "GET / 200"
    # Docker's default format: no hostname, and still the tag is found
    no_host = parse(line.replace(" node-1", ""), tag_pattern=DOCKER_TEMPLATE)
    assert "host" not in no_host and no_host["container_name"] == "web"


def test_tag_pattern_with_docker_tag_template_5424() -> None:
    tag = "registry.local:5000/team/api:v2/api-1/0c7e8d9f1a2b"
    line = f"<30>1 2026-11-29T21:00:00Z node-1 {tag} 2731 {tag} - started"
    record = parse(
        line,
        tag_pattern=DOCKER_TEMPLATE.replace(
            "[^/]+)/(?P<container_name>", ".+)/(?P<container_name>"
        ),
    )
    assert record["image"] == "registry.local:5000/team/api:v2"
    assert record["container_name"] == "api-1"
    assert record["container_id"] == "0c7e8d9f1a2b"


def test_tag_pattern_unmatched_falls_back_to_container_id_rule() -> None:
    record = parse("<30>Nov 29 21:00:00 5a6e1c8e6f3b[1]: x", tag_pattern=DOCKER_TEMPLATE)
    assert record["container_id"] == "5a6e1c8e6f3b" and "image" not in record
    other = parse("<30>Nov 29 21:00:00 sshd[1]: x", tag_pattern=DOCKER_TEMPLATE)
    assert "container_id" not in other and "image" not in other


def test_tag_pattern_optional_groups_that_did_not_match_are_omitted() -> None:
    record = parse(
        "<30>Nov 29 21:00:00 web[1]: x",
        tag_pattern=r"^(?P<container_name>[a-z]+)(?:-(?P<replica>\d+))?$",
    )
    assert record["container_name"] == "web" and "replica" not in record


def test_tag_with_braces_and_colons() -> None:
    # the docs' example of a tag template rendering: "{taskid:aa,version:}"
    record = parse("<30>Nov 29 21:00:00 a.vm {taskid:aa,version:}[1787791]: started")
    assert record["host"] == "a.vm"
    assert record["ident"] == "{taskid:aa,version:}" and record["pid"] == "1787791"
    assert record["message"] == "started"


# --- rsyslog's forwarding templates (captured from rsyslogd 8.2302.0) ----------------------------


def test_rsyslog_traditional_forward_format() -> None:
    record = parse("<30>Nov 29 21:00:00 localhost 5a6e1c8e6f3b[1234]: docker default stdout")
    assert record["host"] == "localhost" and record["container_id"] == "5a6e1c8e6f3b"
    assert record["pid"] == "1234" and record["message"] == "docker default stdout"
    # a message rsyslog received as RFC 5424 is relayed with "tag[pid]" and no colon
    relayed = parse("<27>Nov 29 21:00:00 node1 5a6e1c8e6f3b[1234] docker rfc5424micro")
    assert relayed["ident"] == "5a6e1c8e6f3b" and relayed["pid"] == "1234"
    assert relayed["message"] == "docker rfc5424micro"


def test_rsyslog_traditional_forward_format_truncated_tag() -> None:
    # %syslogtag:1:32% cuts long tags: "nginx:1.25/web/5a6e1c8e6f3b[1234]:" loses its "]:"
    record = parse("<30>Nov 29 21:00:00 node1 nginx-1.25/web/5a6e1c8e6f3b[1234 hello")
    assert record["host"] == "node1"
    assert record["ident"] == "nginx-1.25/web/5a6e1c8e6f3b" and record["pid"] == "1234"
    assert record["message"] == "hello"


def test_rsyslog_splits_tags_at_the_first_colon() -> None:
    # rsyslog itself ends the tag at the first ":" and re-adds a space: what arrives is this
    record = parse(
        "<30>Nov 29 21:00:00 node1 nginx: 1.25/web/5a6e1c8e6f3b[1234]: docker rfc3164 template tag"
    )
    assert record["ident"] == "nginx"
    assert record["message"] == "1.25/web/5a6e1c8e6f3b[1234]: docker rfc3164 template tag"


def test_rsyslog_forward_format_iso_timestamp_in_3164() -> None:
    record = parse("<13>2026-11-29T21:32:29.300704+00:00 vm myapp[7314]: hello from logger")
    assert record == {
        "pri": 13,
        "facility": "user",
        "severity": "notice",
        "time": "2026-11-29T21:32:29.300704Z",
        "host": "vm",
        "ident": "myapp",
        "pid": "7314",
        "message": "hello from logger",
    }
    offset = parse("<30>2026-11-29T22:00:00+01:00 localhost 5a6e1c8e6f3b[1234]: x")
    assert offset["time"] == "2026-11-29T21:00:00Z" and offset["container_id"] == "5a6e1c8e6f3b"


def test_rsyslog_syslog_protocol23_format() -> None:
    record = parse("<13>1 2026-11-29T21:32:29.300704+00:00 vm myapp 7314 - -  hello from logger\n")
    assert record["time"] == "2026-11-29T21:32:29.300704Z"
    assert record["host"] == "vm" and record["ident"] == "myapp" and record["pid"] == "7314"
    assert "msgid" not in record and "sd" not in record
    # rsyslog keeps the space that followed the 3164 tag's colon
    assert record["message"] == " hello from logger"


def test_rsyslog_file_format_has_no_pri() -> None:
    record = parse("2026-11-29T21:00:00.12345Z node1 5a6e1c8e6f3b[1234] docker rfc5424micro\n")
    assert record["pri"] == 13 and record["facility"] == "user" and record["severity"] == "notice"
    assert record["time"] == "2026-11-29T21:00:00.12345Z"
    assert record["host"] == "node1" and record["container_id"] == "5a6e1c8e6f3b"
    assert record["message"] == "docker rfc5424micro"


def test_missing_pri_classic_stamp() -> None:
    # rsyslog's omuxsock/file-style templates without <PRI>
    record = parse("Nov 29 21:00:00 node1 sshd[812]: Accepted publickey for core")
    assert record["pri"] == 13 and record["host"] == "node1" and record["ident"] == "sshd"


def test_local_socket_without_hostname() -> None:
    record = parse("<13>Nov 29 21:00:00 sshd[812]: Accepted publickey for core")
    assert "host" not in record
    assert record["ident"] == "sshd" and record["pid"] == "812"
    assert record["message"] == "Accepted publickey for core"
    kernel = parse("<6>Nov 29 21:00:00 kernel: [ 1.234] eth0: link up")
    assert kernel["ident"] == "kernel" and "pid" not in kernel and "host" not in kernel
    assert kernel["message"] == "[ 1.234] eth0: link up"


def test_hostname_without_tag() -> None:
    record = parse("<14>Nov 29 21:00:00 PA-VM 1,2026/11/29 21:00:00,007200001056,TRAFFIC,end")
    assert record["host"] == "PA-VM" and "ident" not in record
    assert record["message"] == "1,2026/11/29 21:00:00,007200001056,TRAFFIC,end"


# --- network devices -----------------------------------------------------------------------------


def test_cisco_ios_sequence_number_and_msec() -> None:
    line = (
        "<189>123: *Nov 29 21:00:00.123 UTC: %SYS-5-CONFIG_I: "
        "Configured from console by vty0 (10.0.0.1)"
    )
    record = parse(line)
    assert (
        record["pri"] == 189 and record["facility"] == "local7" and record["severity"] == "notice"
    )
    assert record["time"] == "2026-11-29T21:00:00.123Z"
    assert record["ident"] == "%SYS-5-CONFIG_I" and "host" not in record
    assert record["message"] == "Configured from console by vty0 (10.0.0.1)"
    plain = parse(
        "<187>45: Nov 29 21:00:00: %LINK-3-UPDOWN: "
        "Interface GigabitEthernet0/1, changed state to down"
    )
    assert plain["severity"] == "err" and plain["ident"] == "%LINK-3-UPDOWN"
    assert plain["message"] == "Interface GigabitEthernet0/1, changed state to down"


def test_cisco_asa_with_year() -> None:
    record = parse(
        "<166>Nov 29 2026 21:00:00: %ASA-6-302013: Built outbound TCP connection 123 for "
        "outside:10.0.0.1/443 (10.0.0.1/443) to inside:192.168.1.2/51234 (192.168.1.2/51234)"
    )
    assert record["time"] == "2026-11-29T21:00:00Z" and record["ident"] == "%ASA-6-302013"
    assert record["message"].startswith("Built outbound TCP connection 123 for outside:")


def test_juniper_3164_and_structured() -> None:
    record = parse(
        "<28>Nov 29 21:00:00 mx1 mib2d[1234]: SNMP_TRAP_LINK_DOWN: ifIndex 501, ifName ge-0/0/1"
    )
    assert record["host"] == "mx1" and record["ident"] == "mib2d" and record["pid"] == "1234"
    assert record["severity"] == "warning"
    assert record["message"] == "SNMP_TRAP_LINK_DOWN: ifIndex 501, ifName ge-0/0/1"
    structured = parse(
        "<165>1 2026-11-29T21:00:00.123Z mx1 mgd 3046 UI_COMMIT [junos@2636.1.1.1.2.18 "
        "username=\"admin\" comment=\"none\"] User 'admin' requested 'commit' operation"
    )
    assert structured["msgid"] == "UI_COMMIT"
    assert structured["sd"] == {"junos@2636.1.1.1.2.18": {"username": "admin", "comment": "none"}}
    assert structured["message"] == "User 'admin' requested 'commit' operation"


def test_pfsense_filterlog() -> None:
    record = parse(
        "<134>Nov 29 21:00:00 filterlog[7021]: 5,,,1000000103,em0,match,block,in,4,0x0,,64,0,0,"
        "DF,6,tcp,60,10.0.0.5,10.0.0.1,51234,22,0,S,1234567890,,64240,,mss"
    )
    assert record["facility"] == "local0" and record["severity"] == "info"
    assert record["ident"] == "filterlog" and record["pid"] == "7021" and "host" not in record
    assert record["message"].startswith("5,,,1000000103,em0,match,block")


# --- time: year inference, zones -----------------------------------------------------------------


def test_december_lines_read_in_january_belong_to_last_year() -> None:
    january = calendar.timegm((2027, 1, 1, 0, 0, 3))
    assert parse("<13>Dec 31 23:59:58 h a: x", january)["time"] == "2026-12-31T23:59:58Z"
    assert parse("<13>Jan  1 00:00:01 h a: x", january)["time"] == "2027-01-01T00:00:01Z"


def test_january_lines_read_in_december_belong_to_next_year() -> None:
    december = calendar.timegm((2026, 12, 31, 23, 59, 59))
    assert parse("<13>Jan  1 00:00:01 h a: x", december)["time"] == "2027-01-01T00:00:01Z"


def test_year_inference_follows_received_across_batches() -> None:
    parser = SyslogParser()
    line = [b"<13>Mar  1 10:00:00 h a: x"]
    assert parser.parse_batch(line, calendar.timegm((2026, 3, 1, 10, 0, 1)))[0]["time"] == (
        "2026-03-01T10:00:00Z"
    )
    assert parser.parse_batch(line, calendar.timegm((2027, 3, 1, 10, 0, 1)))[0]["time"] == (
        "2027-03-01T10:00:00Z"
    )


def test_february_29_only_in_leap_years() -> None:
    leap = calendar.timegm((2028, 2, 29, 12, 0, 0))
    assert parse("<13>Feb 29 12:00:00 h a: x", leap)["time"] == "2028-02-29T12:00:00Z"
    record = parse("<13>Feb 29 12:00:00 h a: x", RECEIVED)
    assert record["parse_error"] == "invalid timestamp"


@pytest.mark.parametrize(
    ("zone", "line", "expected"),
    [
        ("Europe/Berlin", "<13>Nov 29 21:00:00 h a: x", "2026-11-29T20:00:00Z"),  # CET
        ("Europe/Berlin", "<13>Jul  1 21:00:00 h a: x", "2026-07-01T19:00:00Z"),  # CEST
        ("America/New_York", "<13>Nov 29 16:00:00.5 h a: x", "2026-11-29T21:00:00.5Z"),
        ("Asia/Kolkata", "<13>Nov 30 02:30:00 h a: x", "2026-11-29T21:00:00Z"),
        # an ISO stamp without offset is read in the zone too; one with an offset is not
        ("Europe/Berlin", "<13>2026-11-29T22:00:00 h a: x", "2026-11-29T21:00:00Z"),
        ("Europe/Berlin", "<13>2026-11-29T21:00:00Z h a: x", "2026-11-29T21:00:00Z"),
        ("Europe/Berlin", "<13>1 2026-11-29T21:00:00Z h a - - - x", "2026-11-29T21:00:00Z"),
    ],
)
def test_timezone_of_3164_stamps(zone: str, line: str, expected: str) -> None:
    assert parse(line, timezone=zone)["time"] == expected


# --- format selection and failures ---------------------------------------------------------------


def test_auto_picks_per_message_in_one_batch() -> None:
    parser = SyslogParser()
    records = parser.parse_batch(
        [
            b"<30>1 2026-11-29T21:00:00Z node-1 app 1 - - five",
            b"<30>Nov 29 21:00:00 node-1 app[1]: three",
        ],
        RECEIVED,
    )
    assert [r["message"] for r in records] == ["five", "three"]
    assert [r.get("msgid") for r in records] == [None, None]
    assert parser.parse_errors == 0


def test_forced_rfc5424_on_3164_line_is_a_parse_error() -> None:
    parser = SyslogParser(format="rfc5424")
    line = "<30>Nov 29 21:00:00 node-1 app[1]: hello"
    record = parser.parse(line.encode(), RECEIVED)
    assert record["parse_error"] == "not an RFC 5424 message"
    assert record["message"] == line and record["time"] == RECEIVED_TEXT
    assert record["pri"] == 30 and record["severity"] == "info"
    assert parser.parse_errors == 1


def test_forced_rfc3164_on_5424_line_is_a_parse_error() -> None:
    parser = SyslogParser(format="rfc3164")
    line = "<30>1 2026-11-29T21:00:00Z node-1 app 1 - - hello"
    record = parser.parse(line.encode(), RECEIVED)
    assert record["parse_error"] == "no RFC 3164 timestamp"
    assert record["message"] == line
    assert parser.parse_errors == 1
    # and forced rfc3164 still parses 3164
    assert "parse_error" not in parser.parse(b"<30>Nov 29 21:00:00 h a: x", RECEIVED)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "empty message"),
        (b"\n", "empty message"),
        (b"<999>Nov 29 21:00:00 h a: x", "invalid PRI"),
        (b"<abc>Nov 29 21:00:00 h a: x", "invalid PRI"),
        ("<١٣>Nov 29 21:00:00 h a: x".encode(), "invalid PRI"),  # digits are ASCII only
        (b"<192>1 2026-11-29T21:00:00Z h a - - - x", "invalid PRI"),
        (b"<13>1 2026-11-29 21:00:00 h a - - - x", "invalid RFC 5424 header"),
        (b"<13>1 2026-11-29T21:00:00Z h a - - [bad sd x", "invalid RFC 5424 header"),
        # a "." without digits (CPython 3.11.0-3.11.4 let "(?:\.\d{1,6})?+" keep the ".")
        (b"<13>1 2026-11-29T21:00:00.Z h a - - - x", "invalid RFC 5424 header"),
        (b"<13>1 2026-02-30T21:00:00Z h a - - - x", "invalid timestamp"),
        (b"<13>1 2026-11-29T21:00:00+24:00 h a - - - x", "invalid timestamp"),
        (b"<13>Foo 29 21:00:00 h a: x", "invalid timestamp"),
        (b"<13>Nov 29 25:00:00 h a: x", "invalid timestamp"),
        (b"<13>hello world", "no RFC 3164 timestamp"),
        (b"date=2026-11-29 time=21:00:00 devname=fw1", "no RFC 3164 timestamp"),
    ],
)
def test_unparseable_lines_keep_raw_text(line: bytes, reason: str) -> None:
    parser = SyslogParser()
    record = parser.parse(line, RECEIVED)
    assert record["parse_error"] == reason
    assert record["message"] == line.decode().rstrip("\n")
    assert record["time"] == RECEIVED_TEXT
    assert parser.parse_errors == 1


def test_undecodable_frame_is_kept_with_replacement_characters() -> None:
    parser = SyslogParser()
    garbage = b"\xff\xfe\x00binary\x80 junk"
    record = parser.parse(garbage, RECEIVED)
    assert record["message"] == "\ufffd\ufffd\x00binary\ufffd junk"
    assert record["parse_error"] and record["time"] == RECEIVED_TEXT
    # invalid UTF-8 inside an otherwise valid message: parsed, bytes replaced
    ok = parser.parse(b"<13>Nov 29 21:00:00 h app: caf\xe9 au lait", RECEIVED)
    assert ok["message"] == "caf\ufffd au lait" and "parse_error" not in ok
    assert parser.parse_errors == 1


def test_parse_errors_count_across_batches() -> None:
    parser = SyslogParser()
    parser.parse_batch([b"junk", b"<13>Nov 29 21:00:00 h a: x", b"more junk"], RECEIVED)
    parser.parse_batch([b"", b"<13>1 - - - - - -"], RECEIVED)
    assert parser.parse_errors == 3


def test_not_bytes_does_not_raise() -> None:
    parser = SyslogParser()
    records = parser.parse_batch([bytearray(b"<13>Nov 29 21:00:00 h a: x"), None], RECEIVED)  # type: ignore[list-item]
    assert records[0]["message"] == "x"
    assert records[1]["parse_error"].startswith("internal error")
    assert parser.parse_errors == 1


@pytest.mark.parametrize("received", [math.nan, math.inf, -1e30, 1e30])
def test_absurd_received_times_do_not_raise(received: float) -> None:
    record = SyslogParser().parse(b"<13>Nov 29 21:00:00 h a: x", received)
    assert record["message"] == "x" and record["time"].endswith("Z")


# --- configuration errors ------------------------------------------------------------------------


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="format: unknown syslog format 'rfc9999'"):
        SyslogParser(format="rfc9999")


def test_unknown_timezone() -> None:
    with pytest.raises(ValueError, match="timezone: unknown IANA time zone 'Mars/Olympus'"):
        SyslogParser(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="timezone"):
        SyslogParser(timezone="../etc/passwd")
    with pytest.raises(ValueError, match="timezone"):
        SyslogParser(timezone=None)  # type: ignore[arg-type]


def test_invalid_tag_pattern() -> None:
    with pytest.raises(ValueError, match="tag_pattern: invalid regular expression"):
        SyslogParser(tag_pattern="(?P<x>[unclosed")
    with pytest.raises(ValueError, match="tag_pattern: the regular expression has no named groups"):
        SyslogParser(tag_pattern="[a-z]+/[0-9a-f]{12}")


# --- timeutil ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2026-11-29T21:00:00Z", 1795986000.0),
        ("2026-11-29T21:00:00.5Z", 1795986000.5),
        ("2026-11-29T22:00:00.25+01:00", 1795986000.25),
        ("2026-11-29T14:00:00-07:00", 1795986000.0),
        ("1970-01-01T00:00:00Z", 0.0),
    ],
)
def test_rfc3339_to_epoch(text: str, epoch: float) -> None:
    assert rfc3339_to_epoch(text) == pytest.approx(epoch, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "2026-11-29", "2026-13-29T21:00:00Z", "2026-11-29T21:00:00",
     "2026-11-29T21:00:00+1:00", "2026-11-29T21:00:00.Z", "2026-11-29T21:00:61Z",
     "2026-11-29T21:00:00+01:99"],
)  # fmt: skip
def test_rfc3339_to_epoch_garbage_is_nan(text: str) -> None:
    assert math.isnan(rfc3339_to_epoch(text))
    assert math.isnan(rfc3339_to_epoch(None))  # type: ignore[arg-type]


def test_parsed_time_round_trips_through_epoch() -> None:
    record = parse("<14>1 2026-11-30T02:30:00.123456+05:30 h a - - - x")
    assert rfc3339_to_epoch(record["time"]) == pytest.approx(1795986000.123456, abs=1e-6)
    assert format_epoch(1795986000.123456) == "2026-11-29T21:00:00.123456Z"
    assert format_epoch(1795986000, digits=0) == "2026-11-29T21:00:00Z"


@pytest.mark.parametrize(
    "line",
    [
        b"Jun  1 00:00:00 AAA: 0 ",
        b"<13>Jun  1 00:00:00.5 AAA: 0 ",
        b"<13>2026-06-01T00:00:00 AAA: 0 ",
        b"<13>Jun  1 2026 00:00:00 AAA: 0 ",
    ],
)
def test_upper_case_tag_is_not_taken_for_a_cisco_zone(line: bytes) -> None:
    """Found by hypothesis: a 3-4 letter upper-case tag after the stamp was read as Cisco's
    time-zone word, leaving the message's first word as the hostname."""
    record = SyslogParser().parse(line, 1_780_000_000.0)
    assert record["ident"] == "AAA"
    assert record["message"] == "0 "
    assert "host" not in record


@pytest.mark.parametrize(
    ("line", "host", "ident", "message"),
    [
        (b"<13>Nov 29 21:00:00 x y", "x", None, "y"),
        (b"<13>Nov 29 21:00:00 tag:x y", "tag:x", None, "y"),
        (b"<13>Nov 29 21:00:00 tag[1]x: msg", None, None, "tag[1]x: msg"),
        (b"<13>Nov 29 21:00:00 AB: msg", None, "AB", "msg"),
        (b"<13>2026-11-29T21:00:00Z AB: host tag: m", None, "AB", "host tag: m"),
        (b"Nov 29 21:00:00 host: m", None, "host", "m"),
    ],
)
def test_optional_parts_that_fail_partway_leave_nothing_behind(
    line: bytes, host: str | None, ident: str | None, message: str
) -> None:
    """The 3164 patterns' optional parts (hostname, tag, Cisco zone, ...) are atomic groups,
    not possessive groups: CPython 3.11.0-3.11.4 keep what a failed attempt at a possessive
    group consumed (gh-106052), and these lines then matched nothing."""
    record = parse(line)
    assert "parse_error" not in record, record
    assert (record.get("host"), record.get("ident"), record["message"]) == (host, ident, message)


# --- lines real senders produce and rsyslog parses (issue 14) ------------------------------------


@pytest.mark.parametrize("month", ["AUG", "aug", "AuG", "aUG"])
def test_month_names_in_any_case(month: str) -> None:
    record = parse(f"<13>{month} 10 22:18:24 host app: msg")
    assert "parse_error" not in record, record
    assert record["time"] == "2026-08-10T22:18:24Z"
    assert record["host"] == "host" and record["ident"] == "app" and record["message"] == "msg"
    no_pri = parse(f"{month}  9 2026 22:18:24 host app: msg")
    assert no_pri["time"] == "2026-08-09T22:18:24Z" and no_pri["pri"] == 13


def test_a_word_that_is_no_month_stays_an_invalid_timestamp() -> None:
    assert parse("<13>Abc 10 22:18:24 host app: msg")["parse_error"] == "invalid timestamp"
    assert parse("<13>ABC 10 22:18:24 host app: msg")["parse_error"] == "no RFC 3164 timestamp"


def test_one_space_between_pri_and_classic_stamp() -> None:
    record = parse("<38> Nov 29 21:00:00 host sshd[9]: Accepted")
    assert "parse_error" not in record, record
    assert record["pri"] == 38 and record["time"] == "2026-11-29T21:00:00Z"
    assert record["host"] == "host" and record["ident"] == "sshd" and record["pid"] == "9"
    assert record["message"] == "Accepted"
    assert parse("<38> NOV 29 21:00:00 host sshd: x")["time"] == "2026-11-29T21:00:00Z"


@pytest.mark.parametrize(
    "line",
    [
        "<38>  Nov 29 21:00:00 host sshd: x",  # two spaces
        "<38> 2026-11-29T21:00:00Z host sshd: x",  # before an RFC 3339 stamp
        " Nov 29 21:00:00 host sshd: x",  # no PRI: a leading space is not skipped
    ],
)
def test_spaces_rsyslog_does_not_skip_are_not_skipped(line: str) -> None:
    assert parse(line)["parse_error"] == "no RFC 3164 timestamp"


@pytest.mark.parametrize("tail", ["", " ", "  "])
def test_a_single_word_after_the_stamp_is_the_hostname(tail: str) -> None:
    record = parse("<13>Nov 29 21:00:00 node-1" + tail)
    assert "parse_error" not in record, record
    assert record["host"] == "node-1" and "ident" not in record
    assert record["message"] == tail[1:]


@pytest.mark.parametrize(
    ("word", "ident", "pid"), [("sshd:", "sshd", None), ("sshd[12]", "sshd", "12")]
)
def test_a_single_tag_shaped_word_after_the_stamp_is_the_tag(
    word: str, ident: str, pid: str | None
) -> None:
    for tail in ("", " "):
        record = parse("<13>Nov 29 21:00:00 " + word + tail)
        assert "host" not in record and record["ident"] == ident and record.get("pid") == pid
        assert record["message"] == ""


def test_structured_data_with_spaces_after_the_equals_sign() -> None:
    line = (
        "<13>1 2020-03-13T20:45:38.119Z dynamicwireless.name non 2426 ID931 "
        '[exampleSDID@32473 iut="3" eventSource= "Application" eventID=  "1011"] Try it'
    )
    record = parse(line)
    assert "parse_error" not in record, record
    assert record["sd"] == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}
    }
    assert record["extradata"] == line.split(" ", 6)[6].removesuffix(" Try it")
    assert record["message"] == "Try it"
    assert parse_structured_data('[a b= "c\\"d"]') == {"a": {"b": 'c"d'}}


@pytest.mark.parametrize(
    "sd",
    [
        '[x eventSource ="Application"]',  # space before "="
        '[x  eventSource="Application"]',  # two spaces before a name
        '[x eventSource="Application" ]',  # space before "]"
    ],
)
def test_other_odd_spacing_in_structured_data_stays_invalid(sd: str) -> None:
    record = parse(f"<13>1 2020-03-13T20:45:38Z h a - - {sd} msg")
    assert record["parse_error"] == "invalid RFC 5424 header"


def test_structured_data_shape_cache_stays_bounded() -> None:
    """Shapes of structured data are cached per parser; a sender inventing new shapes (or
    huge ones) must not grow that cache without bound, and such lines still parse."""
    from parsers import rfc5424

    parser = SyslogParser()
    lines = [
        f'<13>1 2026-11-29T21:00:00Z h a - - [x n{i}="v"] m'.encode()
        for i in range(rfc5424._SD_SHAPE_LIMIT + 10)
    ]
    records = parser.parse_batch(lines, RECEIVED)
    assert records[-1]["sd"] == {"x": {f"n{len(lines) - 1}": "v"}}
    assert len(parser._sd.shapes) <= rfc5424._SD_SHAPE_LIMIT
    name = "n" * (rfc5424._SD_SHAPE_KEY_LIMIT + 1)
    huge = parser.parse(f'<13>1 2026-11-29T21:00:00Z h a - - [x {name}="v"] m'.encode(), RECEIVED)
    assert huge["sd"] == {"x": {name: "v"}} and huge["message"] == "m"
    assert all(len(key) <= rfc5424._SD_SHAPE_KEY_LIMIT for key in parser._sd.shapes)


def test_structured_data_shapes_that_share_their_first_piece() -> None:
    """Shapes are looked up by the text before their first value: MDC with optional keys gives
    several shapes with the same first piece. Each line must get its own shape's dict, however
    the shapes alternate and however many there are (more than are tried in turn)."""
    from parsers import rfc5424

    parser = SyslogParser()
    shapes = [
        '[mdc traceId="t{i}"]',
        '[mdc traceId="t{i}" spanId="s{i}"]',
        '[mdc traceId="t{i}" userId="u{i}"]',
        '[mdc traceId="t{i}" spanId="s{i}" userId="u{i}"]',
        '[mdc traceId="t{i}"][origin ip="10.0.0.{i}"]',
        '[mdc traceId="t{i}" spanId= "s{i}"]',
        '[mdc traceId="t{i}" spanId="s{i}" x="1" y="2" z="3" w="4" v="5"]',
    ]
    assert len(shapes) > rfc5424._SD_CHAIN_LIMIT
    lines = [
        f"<13>1 2026-11-29T21:00:00Z h a - - {shapes[(i * 3) % len(shapes)].format(i=i)} m{i}"
        for i in range(60)
    ]
    records = parser.parse_batch([line.encode() for line in lines], RECEIVED)
    for line, record in zip(lines, records, strict=True):
        sd = line.split(" ", 6)[6].rsplit(" ", 1)[0]
        assert record["extradata"] == sd
        assert record["sd"] == parse_structured_data(sd)
        assert list(record["sd"]) == list(parse_structured_data(sd))
        for sd_id, params in record["sd"].items():
            assert list(params) == list(parse_structured_data(sd)[sd_id])
    assert len(parser._sd.builders) == 1  # one first piece: "[mdc traceId="

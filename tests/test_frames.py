import json

import pytest

from service.socket.frames import FrameError, error_frame, message_frame, parse_client_frame, subscribed_frame
from service.groups import is_group_name, offset_after, parse_offset


@pytest.mark.parametrize("name", ["news", "a", "A.b-c_d", "x" * 100, "0"])
def test_group_names_of_the_channels_alphabet_up_to_100_are_valid(name):
    assert is_group_name(name)


@pytest.mark.parametrize("name", ["", "x" * 101, "news!", "a b", "ü", "a/b", None, 5, ["news"]])
def test_other_group_names_are_not(name):
    assert not is_group_name(name)


def test_offsets_compare_by_milliseconds_then_sequence():
    assert parse_offset("1700000000000-5") == (1700000000000, 5)
    assert parse_offset("17") == (17, 0)
    assert offset_after("10-1", "10-0")
    assert offset_after("11-0", "10-99")
    assert not offset_after("10-0", "10-0")
    assert offset_after("0-1", None)
    for bad in ("", "abc", "1-", "-1", "1-2-3", " 1-0", None):
        with pytest.raises(ValueError):
            parse_offset(bad)


def test_message_frame_is_exact_json_built_without_reencoding_the_data():
    data = json.dumps({"text": "héllo \"quoted\"", "n": [1, 2.5, None]}, ensure_ascii=False)
    frame = message_frame("news", "1700000000000-0", data.encode())
    assert json.loads(frame) == {
        "type": "message",
        "group": "news",
        "offset": "1700000000000-0",
        "data": {"text": "héllo \"quoted\"", "n": [1, 2.5, None]},
    }


def test_server_control_frames():
    assert json.loads(subscribed_frame("news", "0-0")) == {"type": "subscribed", "group": "news", "offset": "0-0"}
    assert json.loads(error_frame("bad_json", "nope")) == {"type": "error", "code": "bad_json", "message": "nope"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"type": "ping"}', ("ping", None, None)),
        ('{"type": "subscribe", "group": "news"}', ("subscribe", "news", None)),
        ('{"type": "subscribe", "group": "news", "since": "12-3"}', ("subscribe", "news", "12-3")),
        ('{"type": "unsubscribe", "group": "news", "since": "12-3"}', ("unsubscribe", "news", None)),
    ],
)
def test_client_frames_parse(text, expected):
    frame = parse_client_frame(text)
    assert (frame.type, frame.group, frame.since) == expected


@pytest.mark.parametrize(
    "text, code",
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('{"group": "news"}', "bad_frame"),
        ('{"type": 7}', "bad_frame"),
        ('{"type": "publish", "group": "news"}', "bad_frame"),
        ('{"type": "broadcast", "group": "news"}', "unknown_type"),
        ('{"type": "refresh"}', "bad_frame"),
        ('{"type": "subscribe", "group": "news", "presence": "yes"}', "bad_frame"),
        ('{"type": "subscribe"}', "bad_group"),
        ('{"type": "subscribe", "group": "no spaces"}', "bad_group"),
        ('{"type": "subscribe", "group": "' + "x" * 101 + '"}', "bad_group"),
        ('{"type": "subscribe", "group": "news", "since": "yesterday"}', "bad_offset"),
        ('{"type": "subscribe", "group": "news", "since": 12}', "bad_offset"),
        # the last possible stream id: Redis refuses it as a range start
        ('{"type": "subscribe", "group": "news", "since": "18446744073709551615-18446744073709551615"}', "bad_offset"),
        ('{"type": "subscribe", "group": "news", "since": "18446744073709551616-0"}', "bad_offset"),
    ],
)
def test_bad_client_frames_name_their_problem(text, code):
    with pytest.raises(FrameError) as caught:
        parse_client_frame(text)
    assert caught.value.code == code

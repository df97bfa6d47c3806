"""Reading a group's history: its last offset and the messages after a given offset.

Messages are read a page at a time, as the reader takes them, so replaying a long gap
holds one page in memory, not the whole retained history.
"""

from dataclasses import dataclass

from redis.exceptions import ResponseError

from service.groups import ORIGIN, offset_after
from service.storage import keys
from service.storage.clients import redis_sync

# One round trip returns the stream's last offset, its oldest retained offset, whether
# anything was ever trimmed away, and the first page after `since`, read atomically.
# (Redis 7.0 does not move max-deleted-entry-id when XADD trims, so trimming is
# detected as entries-added > length.) With more than ARGV[3] messages after `since`,
# the page starts at the ARGV[3]th newest instead, and the reply says it was capped
# (only counted when the stream holds more than the cap at all).
HISTORY_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'', '', 0, 0, {}} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last, first, added, length = '0-0', '', 0, 0
for i = 1, #info, 2 do
  local name, value = info[i], info[i + 1]
  if name == 'last-generated-id' then last = value
  elseif name == 'first-entry' and value then first = value[1]
  elseif name == 'entries-added' then added = value
  elseif name == 'length' then length = value end
end
local entries, capped = {}, 0
if ARGV[1] ~= '' then
  local start, cap = '(' .. ARGV[1], tonumber(ARGV[3])
  if length > cap then
    local newest = redis.call('XREVRANGE', KEYS[1], '+', start, 'COUNT', cap + 1)
    if #newest > cap then start, capped = newest[cap][1], 1 end
  end
  entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[2])
end
return {last, first, added > length and 1 or 0, capped, entries}
"""
PAGE = 50


@dataclass
class History:
    """What a subscriber needs to join a group: where the group stands and what it missed."""

    last_offset: str
    # the first page of (offset, data JSON bytes) after `since`, oldest first; the rest
    # comes from pages()
    messages: list
    # True when messages after `since` were trimmed away before they could be replayed,
    # or are more than the replay cap (the oldest of them are skipped)
    trimmed: bool
    client: object = None
    group: str = ""

    async def pages(self, count=PAGE):
        """Every message after `since` up to last_offset, a page at a time."""
        page = self.messages
        while page:
            yield page
            if len(page) < count or not offset_after(self.last_offset, page[-1][0]):
                return
            raw = await self.client.xrange(
                keys.stream(self.group), f"({page[-1][0]}", self.last_offset, count=count
            )
            page = _entries(raw)


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _entries(raw):
    messages = []
    for entry_id, fields in raw:
        # a flat list from the script, a dict from redis-py's own XRANGE
        values = fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2]))
        messages.append((_text(entry_id), values.get(b"d", b"null")))
    return messages


async def history_read(client, *, group, since=None, cap=None):
    """The group's last offset and, with `since`, the first page of the retained
    messages after it (at most `cap` of them in all: the newest)."""
    script = client.register_script(HISTORY_SCRIPT)
    last, first, ever_trimmed, capped, raw = await script(
        keys=[keys.stream(group)], args=[since or "", PAGE, cap or 2**62]
    )
    last, first = _text(last), _text(first)
    if not last:
        # No stream: never published, or expired. Anything after `since` is gone.
        trimmed = since is not None and offset_after(since, ORIGIN)
        return History(ORIGIN, [], trimmed, client, group)
    # Entries were removed and the oldest one left is past `since`: some of what came
    # after `since` may be gone. (Exactly at the trim point this errs on the side of a
    # warning.)
    trimmed = bool(ever_trimmed) and since is not None and bool(first) and offset_after(first, since)
    return History(last, _entries(raw), trimmed or bool(capped), client, group)


def history_last_offset(*, group):
    """The offset of the group's newest message ("0-0" if it has none)."""
    try:
        info = redis_sync().xinfo_stream(keys.stream(group))
    except ResponseError:  # no such stream
        return ORIGIN
    return _text(info["last-generated-id"])

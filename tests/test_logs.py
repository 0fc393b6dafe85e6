"""Replica output as log records: one record a line, a traceback kept whole."""

from __future__ import annotations

import asyncio

from zeroserve.deployments.logs import output_records

TRACEBACK = """\
INFO starting
Traceback (most recent call last):
  File "/srv/model.py", line 3, in predict
    return self.model.predict(x)
ValueError: X has 3 features, but the model expects 4
INFO still serving
"""


async def records_of(text: str, close: bool = True) -> list[str]:
    stream = asyncio.StreamReader()
    stream.feed_data(text.encode())
    if close:
        stream.feed_eof()
    return [record async for record in output_records(stream, quiet_s=0.05)]


async def test_a_traceback_is_one_record_and_plain_lines_are_one_each():
    records = await records_of(TRACEBACK)
    assert records[0] == "INFO starting"
    assert records[1].splitlines()[0] == "Traceback (most recent call last):"
    assert records[1].splitlines()[-1] == "ValueError: X has 3 features, but the model expects 4"
    assert records[2] == "INFO still serving"
    assert len(records) == 3


async def test_indented_continuations_join_their_line_and_blank_lines_vanish():
    assert await records_of("first\n  more of first\n\nsecond\n") == ["first\n  more of first", "second"]


async def test_an_open_record_is_written_after_a_short_silence_not_held_until_the_next_line():
    stream = asyncio.StreamReader()
    stream.feed_data(b"one line, then nothing for a while\n")
    records = output_records(stream, quiet_s=0.05)
    assert await asyncio.wait_for(anext(records), 1) == "one line, then nothing for a while"
    stream.feed_eof()


async def test_a_line_past_the_limit_is_left_out_and_the_output_still_flows():
    stream = asyncio.StreamReader(limit=1024)
    stream.feed_data(b"before\n" + b"x" * 5000 + b"\nafter\n")
    stream.feed_eof()
    records = [record async for record in output_records(stream, quiet_s=0.05)]
    assert records[0] == "before" and records[-1] == "after"
    assert "left out" in records[1]

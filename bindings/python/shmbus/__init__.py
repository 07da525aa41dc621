"""shmbus: a shared-memory message bus for processes on one machine.

    import shmbus
    shmbus.create("ticks", partitions=1, durable=True)
    with shmbus.Producer("ticks") as p:
        p.publish(b"hello", key="k", headers={"venue": "X", "seq": 1})
    with shmbus.Consumer("ticks", start="earliest") as c:
        for msg in c:                      # blocks; Ctrl-C raises KeyboardInterrupt
            print(msg.position, msg.time, bytes(msg))
    a = shmbus.read("ticks", dtype=tick_dtype)   # a recording as a NumPy structured array

The bus: every call takes bus=...; None is $SHMBUS_BUS, else 'default'.
Messages own a copy of their bytes (see Message); claim() is zero-copy.
"""

from ._shmbus import Claim, Consumer, Message, Producer, create, delete, delete_cursor, describe
from . import _shmbus
from .errors import (Busy, Corrupt, Error, Evicted, Full, InvalidArgument, Lagged, NotFound,
                     PermissionDenied, Revoked, SpillFailed, Timeout)

__all__ = [
    "Producer", "Consumer", "Message", "Claim", "create", "describe", "delete", "delete_cursor",
    "read", "read_chunks", "to_pandas", "Error", "NotFound", "PermissionDenied",
    "InvalidArgument", "Busy", "Full", "Timeout", "Lagged", "Corrupt", "Evicted", "Revoked",
    "SpillFailed",
]


def read_chunks(topic, partition=0, start=None, end=None, dtype=None, *, bus=None,
                chunk=1 << 20):
    """Yields a recording as structured arrays of up to `chunk` records each
    (for recordings larger than memory); see read()."""
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk <= 0:
        raise ValueError(f"chunk: expected a positive int, got {chunk!r}")
    reader = _shmbus._Reader(topic, bus, partition, start, end, dtype)
    while True:
        a = reader.next(chunk)
        if a is None:
            return
        yield a


def read(topic, partition=0, start=None, end=None, dtype=None, *, bus=None):
    """A partition's messages as a NumPy structured array, from the segment
    files (durable topics) and the ring alike.

    start: None (the oldest message), a position (int), or a time (datetime,
    numpy.datetime64, pandas.Timestamp: the first message stamped at or after it).
    end: None (the tail when the read began), a position, or a time (exclusive).
    Fields: position (u8), timestamp (datetime64[ns]), key_size (u4), size
    (u4, the payload's bytes) and payload: viewed as `dtype` (each payload must
    be exactly dtype.itemsize: fixed-size records such as ticks), or raw bytes
    ('V<n>', n the longest payload) when dtype is None. The array is the
    caller's own copy."""
    import numpy

    chunks = list(read_chunks(topic, partition, start, end, dtype, bus=bus, chunk=1 << 62))
    if not chunks:
        return _empty(dtype)
    return chunks[0] if len(chunks) == 1 else numpy.concatenate(chunks)


def _empty(dtype):
    import numpy

    payload = numpy.dtype(dtype) if dtype is not None else numpy.dtype("V1")
    return numpy.zeros(0, dtype=numpy.dtype({
        "names": ["position", "timestamp", "key_size", "size", "payload"],
        "formats": ["<u8", "<M8[ns]", "<u4", "<u4", payload],
        "offsets": [0, 8, 16, 20, 24]}))


def to_pandas(records):
    """A pandas DataFrame from read()'s array, indexed by a DatetimeIndex of
    the timestamps (UTC). A structured payload dtype becomes one column per
    field; raw payloads one column of bytes. Needs python3-pandas."""
    try:
        import pandas
    except ImportError as e:
        raise ImportError("shmbus.to_pandas needs pandas (Debian: python3-pandas)") from e
    payload = records["payload"]
    columns = {"position": records["position"], "key_size": records["key_size"],
               "size": records["size"]}
    if payload.dtype.names:
        for name in payload.dtype.names:
            columns[name] = payload[name]
    elif payload.dtype.kind == "V":
        columns["payload"] = [bytes(p)[:n] for p, n in zip(payload, records["size"])]
    else:
        columns["payload"] = list(payload) if payload.ndim > 1 else payload
    index = pandas.DatetimeIndex(records["timestamp"], name="timestamp").tz_localize("UTC")
    return pandas.DataFrame(columns, index=index)

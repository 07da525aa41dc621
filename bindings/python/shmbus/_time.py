"""Times as shmbus takes them: CLOCK_REALTIME nanoseconds since the epoch."""

import datetime as _dt

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def to_ns(t, name="time"):
    """ns since the epoch from an int (ns), a datetime (naive: local time, as
    datetime.timestamp() reads it), a pandas Timestamp or a numpy.datetime64."""
    if isinstance(t, bool):
        raise TypeError(f"{name}: expected a datetime, numpy.datetime64 or int ns, got bool")
    if isinstance(t, int):
        return t
    value = getattr(t, "value", None)  # pandas.Timestamp: ns since the epoch
    if isinstance(value, int) and isinstance(t, _dt.datetime):
        return value
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.astimezone()  # local time, made aware
        delta = t - _EPOCH
        return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if type(t).__name__ == "datetime64":
        import numpy

        if numpy.isnat(t):
            raise ValueError(f"{name}: NaT is not a time")
        return int(t.astype("datetime64[ns]").astype("int64"))
    raise TypeError(
        f"{name}: expected a datetime, numpy.datetime64 or int ns, got {type(t).__name__}")


def from_ns(ns):
    """An aware UTC datetime (microseconds) from ns since the epoch."""
    return _EPOCH + _dt.timedelta(microseconds=ns // 1000)

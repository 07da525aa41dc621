"""shmbus's exceptions. Each carries the C++ library's message, which names
the object and the problem, and `errno` where one applies (else 0)."""


class Error(Exception):
    """The base of every error shmbus raises."""

    def __init__(self, message: str, errno: int = 0):
        super().__init__(message)
        self.errno = errno


class NotFound(Error, LookupError):
    """A bus, topic, partition or named cursor that does not exist (ENOENT)."""


class PermissionDenied(Error):
    """The topic's ACL or the files' modes do not grant this (EACCES, EPERM)."""


class InvalidArgument(Error, ValueError):
    """An option or argument out of range; the message names it."""


class Busy(Error):
    """Every slot has a live owner, or a named cursor has a holder (EBUSY)."""


class Full(Error):
    """A `block` topic's slowest consumer is a ring behind, past the timeout."""


class Timeout(Error):
    """A bounded wait ran out (wait_durable)."""


class Lagged(Error):
    """Producers overwrote messages before this consumer read them. The
    consumer has moved past them: `lost_from`, `lost_to` are the positions
    [from, to) it lost; poll again to go on."""

    def __init__(self, message: str, lost_from: int = 0, lost_to: int = 0):
        super().__init__(message)
        self.lost_from = lost_from
        self.lost_to = lost_to


class Corrupt(Error):
    """The frame at `position` fails validation; the consumer stays there
    (seek past it to go on)."""

    def __init__(self, message: str, position: int = 0):
        super().__init__(message)
        self.position = position


class Evicted(Error):
    """shmbusd took this consumer's cursor slot (too slow on a `block` topic
    with slow_consumer_timeout_ms); call rejoin()."""


class Revoked(Error):
    """The claim was open past the topic's hung_producer_timeout and shmbusd
    revoked it; nothing was published, publish again."""


class SpillFailed(Error):
    """A durable topic's spiller stopped on an error (a full disk, EIO)
    before the message was durable; `shmbus topic describe` says why."""

# What every Python scenario can call without importing anything: the host's clock, and the
# answers a hook gives. Each answer is a tagged tuple the plugin reads back; the tags are not
# part of the API.


def now():
    """The host clock in seconds since the Unix epoch (virtual in tests, as the kubelet's is)."""
    return __lk_now


def fail(message, code="failed"):
    """The runtime call fails with this message (what events and statuses show).
    code: "failed" (default), "not-found", "invalid-argument" or "unavailable"."""
    return ("fail", message, code)


def exits(after=0, code=1, reason=None, message=""):
    """The container exits `after` seconds after it starts, with this exit code. The
    reason defaults to what the runtime reports: "Completed" for 0, "Error" otherwise."""
    return ("exits", after, code, reason, message)


def oom_killed(after=0, message=""):
    """The kernel's OOM killer ends the container `after` seconds after it starts (137)."""
    return ("exits", after, 137, "OOMKilled", message)


def runs_forever():
    """The container runs until it is stopped, whatever its command does."""
    return ("forever",)


def ignores_sigterm():
    """From on_stop: the container ignores SIGTERM and is killed after the grace period."""
    return ("ignores-sigterm",)


def delay(seconds):
    """From before_call: the call answers after this many seconds (a slow runtime)."""
    return ("delay", seconds)


def hang():
    """From before_call: the call does not answer until the lab's `heal` action."""
    return ("hang",)


def uses(cpu_millicores=None, memory_bytes=None, disk_bytes=None):
    """From usage: what the container uses of the node; None leaves a figure to the host."""
    return ("usage", cpu_millicores, memory_bytes, disk_bytes)

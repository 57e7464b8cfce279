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


def condition(type, ok, reason="", message=""):
    """From conditions: a runtime condition ("RuntimeReady", "NetworkReady"); one not given is true."""
    return ("condition", type, ok, reason, message)


def exec_result(exit_code=0, stdout="", stderr=""):
    """From on_exec: what a command run in the container (kubectl exec, an exec probe) answers."""
    return ("exec", exit_code, stdout, stderr)


def kill(c, code=137, reason="Error", message=""):
    """From trigger: the running container `c` exits now with this code."""
    __lk_effects.append(("kill", c.id, code, reason, message))


def node_action(action):
    """Asks for a node action on this plugin's node, done once the call returns: "partition",
    "heal", "kubelet-restart", "reboot", "runtime-down", "network-down", "memory-pressure",
    "disk-pressure" or "pid-pressure"."""
    __lk_effects.append(("node", action))

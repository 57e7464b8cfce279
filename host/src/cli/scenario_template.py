"""NAME: what this scenario does to the pods it serves (shown by `labkubelet plugin list`)."""
# A labkubelet scenario in Python. Drop this file into the plugin folder: it loads at once, and
# every save reloads it. `labkubelet plugin check NAME.py` checks it without an agent.
#
# Every hook is optional: a hook the file does not define behaves as a healthy runtime does
# (the container runs its command in the SDK's busybox-like shell). A hook that raises, runs
# longer than 0.5 s or answers the wrong kind of value is logged with this file's line, and the
# call gets that default answer.
#
# What hooks are handed:
#   c    a container: c.name, c.image, c.command, c.args, c.env (dict), c.attempt (how many
#        times it was created before: 0 on the first start), c.kind ("regular", "init",
#        "sidecar"), c.restart_policy, c.pod_name, c.pod_namespace, c.labels, c.annotations,
#        c.started_at and c.running_for (seconds), c.memory_limit (bytes or None)
#   pod  a pod: pod.name, pod.namespace, pod.uid, pod.labels, pod.annotations, pod.ip
#   state  a dict the hooks share, kept between calls and across reloads
#
# What they answer with: fail(message), exits(after, code), oom_killed(after), runs_forever(),
# ignores_sigterm(), delay(seconds), hang(), uses(cpu_millicores, memory_bytes). now() is the
# host clock in seconds (virtual in tests, as the kubelet logic's is).

NAME = "NAME"          # the plugin's name; pods can pick it with labkubelet.io/scenario: NAME
VERSION = "1"
SELECTOR = "app=NAME"  # a label selector: the pods this scenario serves


# def on_pull(image, pod):
#     """Whether a pull works: None, or fail("manifest unknown", code="not-found")."""
#     if image.endswith(":canary"):
#         return fail("manifest unknown", code="not-found")


# def on_run_sandbox(pod):
#     """Whether the pod's sandbox starts: None, or fail("failed to setup network for sandbox")."""


# def on_create(c):
#     """Whether the container can be created: None, or fail("no space left on device")."""


def on_start(c):
    """How long a started container lives: None (what its command does), exits(after, code),
    oom_killed(after), runs_forever(), or fail(message)."""
    if c.attempt % 2 == 1:
        return exits(after=5, code=2)


# def on_stop(c):
#     """What the container does on SIGTERM: None, exits(code=0) or ignores_sigterm()."""


# def before_call(call):
#     """Before every runtime call (call.method, call.pod, call.container, call.image):
#     None, delay(seconds) or hang() (until the lab's `heal` action)."""
#     if call.method == "pull-image" and call.pod and call.pod.labels.get("app") == "slow":
#         return delay(15)


# def probe(c, kind):
#     """A liveness, readiness or startup probe: None (the container answers), True, False,
#     or the failure's output as a string."""
#     if kind == "readiness" and c.labels.get("tier") == "flaky":
#         return "HTTP probe failed with statuscode: 503"


# def start_logs(c):
#     """Lines the container logs when it starts, before its command's own output."""
#     return ["starting " + c.name]


# def usage(c):
#     """What the container uses of the node (kubectl top, eviction): None or
#     uses(cpu_millicores=250, memory_bytes=200 * 1024 * 1024)."""


# def conditions():
#     """The runtime's conditions, which the node's Ready condition follows."""
#     return [condition("NetworkReady", False, "NetworkPluginNotReady", "cni config uninitialized")]


# def on_exec(c, cmd):
#     """A command run in the container (kubectl exec, an exec probe): None lets its shell run
#     it, or exec_result(exit_code, stdout, stderr)."""


# ACTIONS = {"corrupt": "the database dies with exit code 2"}
#
# def trigger(action, containers, args):
#     """labkubelet trigger NAME corrupt --pod db-0: None leaves other actions to the built-in
#     ones; kill(c, code=2) ends a container; the string returned is what the action did.
#     node_action("partition") from any hook does what `labkubelet node partition` does."""
#     if action == "corrupt":
#         for c in containers:
#             kill(c, code=2)
#         return f"corrupted {len(containers)} container(s)"

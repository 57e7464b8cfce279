"""Every second start of an app=flaky container exits 2; :canary images do not pull."""
SELECTOR = "app=flaky"
CODE = 2


def on_pull(image, pod):
    if image.endswith(":canary"):
        return fail("manifest unknown", code="not-found")


def on_start(c):
    if c.attempt % 2 == 1:
        return exits(after=5, code=CODE)

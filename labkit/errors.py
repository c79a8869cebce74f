"""Errors that say what failed and what to run next.

Every error the lab raises on purpose is a ``LabError``: ``str(err)`` is
one line (what failed, then what to do about it) and ``err.details`` holds
what helps to see why (a log tail, the verifier's lines, the console).
"""


class LabError(Exception):
    """A failure with a one-line message and a fix."""

    def __init__(self, message, *, fix=None, details=""):
        self.message = message
        self.fix = fix
        self.details = details
        super().__init__(self.headline())

    def headline(self):
        if self.fix:
            return f"{self.message} -- {self.fix}"
        return self.message

    def render(self):
        """The headline plus the details, for a terminal."""
        text = self.headline()
        if self.details:
            text += "\n" + "\n".join("  " + line for line in self.details.rstrip().splitlines())
        return text


class MissingTool(LabError):
    """A program the lab needs is not installed."""


class KernelNotBuilt(LabError):
    """No lab kernel matches the current patches and config."""


class KernelBuildFailed(LabError):
    """A step of ``labkit kernel build`` failed."""


class VMError(LabError):
    """The lab VM did not boot, crashed or stopped answering."""


class GuestTimeout(VMError):
    """A command in the guest ran past its deadline; the VM was stopped."""


class VerifierError(LabError):
    """The kernel refused to load a BPF program."""


class BpfBuildError(LabError):
    """clang could not compile a BPF program."""

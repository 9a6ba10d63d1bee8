"""What `tunesmith doctor` finds: the rows as the model will see them, each check's verdict and fix, and the memory
estimate. Plain data, so the CLI, an HTML page and the Web UI can all render the same report."""

from __future__ import annotations

from dataclasses import dataclass, field

OK, NOTE, PROBLEM = "ok", "note", "problem"  # a NOTE explains something that is fine; a PROBLEM fails the check


@dataclass
class Piece:
    text: str
    kind: str  # "prompt", or the trained part's kind: "answer", "chosen", "rejected"


@dataclass
class ShownRow:
    location: str  # file:line
    pieces: list[Piece]
    tokens: int
    truncated: bool = False  # cut at cutoff_len
    dropped: bool = False  # training skips it: no trained token is left within cutoff_len


@dataclass
class Finding:
    check: str  # short name, e.g. "end of turn"
    status: str  # OK, NOTE or PROBLEM
    verdict: str  # what was found, with numbers
    fix: str = ""  # what to do about it (PROBLEM and NOTE)


@dataclass
class MemoryLine:
    label: str
    bytes: int


@dataclass
class MemoryEstimate:
    device: str
    free_bytes: int
    lines: list[MemoryLine]  # weights, trainable copies, gradients, optimizer state
    activations_per_token: int  # without checkpointing
    activations_per_token_checkpointed: int
    token_budget: int  # what `train` would choose for a micro-batch (max_tokens_per_batch)
    checkpointing: bool  # and whether it would recompute activations
    fits: bool
    total_bytes: int  # fixed parts + activations of the chosen micro-batch


@dataclass
class Report:
    model: str
    template: str  # the template's name (auto -> what it resolved to)
    stop: str  # the token answers end with
    rows: list[ShownRow] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    memory: MemoryEstimate | None = None

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.status == PROBLEM]

    @property
    def exit_code(self) -> int:
        """0: fine to train; 1: something to fix first."""
        return 1 if self.problems else 0

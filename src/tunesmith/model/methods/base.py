"""The Method interface and what every method shares: reading and writing exactly the trainable tensors."""

from __future__ import annotations

from tunesmith.errors import ConfigError

CHECKPOINTING = {"use_reentrant": False}


class Method:
    name = ""
    saves_adapter = False  # the run holds a PEFT adapter (True) or a complete model
    keys: tuple[str, ...] = ()  # the settings it reads

    def __init__(self, **settings):
        self.settings = settings

    @classmethod
    def from_settings(cls, settings) -> "Method":
        if settings is None:
            return cls()
        return cls(**{key: getattr(settings, key) for key in cls.keys if hasattr(settings, key)})

    def check_base(self, source: str, head: str) -> None:
        """Refuse, before loading, a base this method cannot train (e.g. shapes 4-bit kernels cannot pack)."""

    def quantization(self, dtype):
        """The transformers quantization config to load the base with, or None for plain weights."""
        return None

    def wrap(self, model, checkpointing: bool, heads: tuple[str, ...] = ()):
        """Make the parameters this method trains trainable (wrapping the model where needed); return the model.
        `heads`: new modules of the stage (a reward head) that always train in full."""
        raise NotImplementedError

    @staticmethod
    def enable_checkpointing(model, checkpointing: bool) -> None:
        if not checkpointing:
            return
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.2x's name; the old one goes in v6
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=CHECKPOINTING)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=CHECKPOINTING)

    @staticmethod
    def train_heads(model, heads: tuple[str, ...]) -> None:
        for name, p in model.named_parameters():
            if name.split(".")[0] in heads:
                p.requires_grad_(True)


def trainable_state(model) -> dict:
    """The tensors a checkpoint must hold to resume: exactly the trainable ones."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: dict) -> None:
    params = dict(model.named_parameters())
    missing = [n for n in params if params[n].requires_grad and n not in state]
    unknown = [n for n in state if n not in params]
    if missing or unknown:
        raise ConfigError(f"config: the checkpoint does not match this model/method (missing {missing[:2]}, "
                          f"unexpected {unknown[:2]}); resume with the config the checkpoint was made with")
    for name, tensor in state.items():
        params[name].data.copy_(tensor)


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total

"""`doctor(cfg)`: everything that can be checked before training, in seconds. It reads every row, loads only the
tokenizer (and the model's config for the memory estimate: its shapes, on the meta device), encodes the rows exactly
as training will, and returns a Report (report.py) that render.py turns into text or HTML."""

from __future__ import annotations

from tunesmith.data.dataset import DataSpec, load_items
from tunesmith.data.formats import Document, to_canonical
from tunesmith.data.sources import read_rows
from tunesmith.data.templates import get_template
from tunesmith.doctor import checks
from tunesmith.doctor.report import PROBLEM, Finding, Report
from tunesmith.doctor.rows import encode_all, shown
from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.stages import get_stage, stage_class

UNLIMITED = 1 << 30  # a cutoff_len no row reaches: the rows as they are before the cut


def doctor(cfg, rows: int = 3, memory: bool = True) -> Report:
    """The report for a training config (a TrainConfig). `rows`: how many rows of the first dataset to show."""
    if rows < 0:
        raise ConfigError(f"doctor: --rows must be 0 or more, got {rows}")
    from tunesmith.model.loader import NO_WEIGHTS, NO_WEIGHTS_FIX, holds_no_weights, load_tokenizer, resolve_model
    from tunesmith.model.methods import get_method

    stage, method = get_stage(cfg.stage, cfg), get_method(cfg.method, cfg)
    spec = DataSpec.from_settings(cfg)
    splits = load_items(spec, stage.checked)  # bad rows stop here, as they stop `train`: one line, exit 2
    source = resolve_model(cfg.model)
    tokenizer = load_tokenizer(source)
    template = get_template(cfg.template, tokenizer)
    name = template.name if template.name != "auto" or template.format is None else \
        f"auto (the tokenizer's own, recognised as {template.format.name})"
    report = Report(cfg.model or "embedded SmolLM2-135M-Instruct", name, template.stop)
    unlimited = stage_class(cfg.stage)(**{**{key: getattr(cfg, key) for key in stage.keys if hasattr(cfg, key)},
                                          "cutoff_len": UNLIMITED})
    documents = bool(splits.train) and isinstance(splits.train[0], Document)
    first = stage.checked(to_canonical(read_rows(_first(cfg.dataset))[:rows], cfg.dataset_format, cfg.columns,
                                       cfg.system))
    try:
        report.rows = shown(_encode(first, stage, unlimited, template, tokenizer, documents), tokenizer,
                            cfg.cutoff_len)
        encoded = _encode(splits.train, stage, unlimited, template, tokenizer, documents)
    except ConfigError as e:  # the template cannot encode these rows: the one finding that matters
        report.findings.append(Finding("template", PROBLEM, str(e).removeprefix("config: "),
                                       "choose another template= (see the README's Templates)"))
        encoded = None
    if encoded is not None:
        report.findings += [
            checks.end_of_turn(template, tokenizer, encoded, answers=not documents),
            checks.pad_and_eos(template, tokenizer, encoded),
            checks.bos(tokenizer, encoded),
            checks.saved_template(template, tokenizer, splits.train),
            checks.cutoff(encoded, cfg.cutoff_len, documents),
        ]
    report.findings += [checks.answers(splits.train), checks.placeholders(splits.train),
                        checks.overlap(splits.train, splits.val, spec)]
    if holds_no_weights(source) and not cfg.train_from_scratch:
        report.findings.append(Finding("model", PROBLEM, NO_WEIGHTS, NO_WEIGHTS_FIX))
    try:
        method.check_base(source, stage.head)  # what train refuses before loading (4-bit shapes)
    except TunesmithError as e:
        report.findings.append(Finding("method", PROBLEM, str(e), "use method=lora, or quantization_bit=8"))
    if memory:
        report.memory = _memory(cfg, source, stage, method)
        report.findings.append(_memory_finding(report.memory, cfg))
    return report


def _first(dataset) -> str:
    return dataset[0] if isinstance(dataset, list) else dataset


def _encode(items, stage, unlimited, template, tokenizer, documents: bool):
    encoded = encode_all(items, stage, unlimited, template, tokenizer)
    if documents:  # pretraining splits documents into cutoff_len rows: nothing is cut away
        for row in encoded:
            row.full = row.cut
    return encoded


def _memory(cfg, source: str, stage, method):
    from tunesmith.doctor.memory import estimate
    from tunesmith.model.loader import pick_device
    from tunesmith.train.precision import choose_precision

    device = pick_device(cfg.device)
    precision = choose_precision(cfg.dtype, device)
    dtype = precision.storage(method.saves_adapter)  # what train loads the base in
    return estimate(cfg, source, stage, method, device, dtype, precision.trainable)


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def _memory_finding(m, cfg) -> Finding:
    fixed = sum(line.bytes for line in m.lines)
    plan = (f"train would use micro-batches of up to {m.token_budget} tokens"
            f"{' with activation checkpointing' if m.checkpointing else ''}")
    if not m.fits:
        need = fixed + cfg.cutoff_len * m.activations_per_token_checkpointed
        return Finding("memory", PROBLEM, f"needs at least {gib(need)} (weights and training state {gib(fixed)}, "
                       f"one cutoff_len={cfg.cutoff_len} row with checkpointing), {gib(m.free_bytes)} free on "
                       f"{m.device}", "method=qlora (4-bit base) or lora instead of full, a lower cutoff_len, or a "
                       "smaller model")
    return Finding("memory", "ok", f"about {gib(m.total_bytes)} of {gib(m.free_bytes)} free on {m.device}; {plan}")

"""The checks of the course's "it does not work" list that can run before training: the end-of-turn token, PAD and
EOS, BOS, the template chat will use, the `cutoff_len` cut, the answers themselves (empty, repeated, unfilled
placeholders), and train/validation overlap.
Each returns a Finding with a verdict in numbers and, where something is off, the fix."""

from __future__ import annotations

import tempfile
from collections import Counter

from tunesmith.data.dataset import unfilled_placeholders
from tunesmith.data.formats import Conversation, Document, Preference
from tunesmith.data.packing import IGNORE
from tunesmith.data.templates import FORMATS, Template, get_template
from tunesmith.doctor.report import NOTE, OK, PROBLEM, Finding
from tunesmith.doctor.rows import Encoded

PROBE = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]


def _spans(example) -> list[list[int]]:
    """The runs of trained tokens (answers) of an example."""
    spans, current = [], []
    for token, label in zip(example.input_ids, example.labels):
        if label != IGNORE:
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    return spans + ([current] if current else [])


def _named_for(token: str, tokenizer) -> str | None:
    return next((name for name, fmt in FORMATS.items() if fmt.resolved(tokenizer).stop == token), None)


def end_of_turn(template: Template, tokenizer, encoded: list[Encoded], answers: bool) -> Finding:
    """Answers end with one token, the one the chat template writes after an answer and chat stops on."""
    stop = template.stop
    ids = tokenizer(stop, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        return Finding("end of turn", PROBLEM, f"answers end with {stop!r}, which is {len(ids)} tokens in this "
                       "vocabulary: chat can only stop on a single token",
                       "choose a template whose end-of-turn token the tokenizer has (template=auto or one of "
                       f"{', '.join(FORMATS)})")
    if not answers:
        return Finding("end of turn", OK, f"documents end with EOS {stop!r}, a single token")
    rendered = template.render(tokenizer, PROBE)
    after = rendered[rendered.rfind("A") + 1:].lstrip()  # what the template writes right after an answer
    written = tokenizer(after, add_special_tokens=False)["input_ids"][:1]
    if written and written != ids:
        token = tokenizer.convert_ids_to_tokens(written[0])
        named = _named_for(token, tokenizer) if after.startswith(token) else None
        fix = (f"set template={named}: it ends answers with {token!r}, which chat then stops on" if named
               else "set template=auto (the tokenizer's own template) or a named template built for this tokenizer")
        return Finding("end of turn", PROBLEM, f"the chat template ends an answer with {after[:20]!r} (first token "
                       f"{token!r}) but answers are trained to end with {stop!r}: the model learns an ending its "
                       "chat template never writes", fix)
    stop_id = ids[0]
    untruncated = [e.full for e in encoded if e.full is not None and e.cut is not None and len(e.full) == len(e.cut)]
    spans = [s for e in untruncated for s in _spans(e)]
    wrong = sum(s[-1] != stop_id for s in spans)
    if wrong:
        return Finding("end of turn", PROBLEM, f"{wrong} of {len(spans)} answers do not end with {stop!r}",
                       "check the chat template: it must write the end-of-turn token right after each answer")
    return Finding("end of turn", OK, f"all {len(spans)} answers end with {stop!r} (one token, id {stop_id}), "
                   "the token the chat template writes after an answer and chat stops on")


def pad_and_eos(template: Template, tokenizer, encoded: list[Encoded]) -> Finding:
    stop = template.stop
    stop_id = tokenizer.convert_tokens_to_ids(stop)
    pad, pad_id = tokenizer.pad_token, tokenizer.pad_token_id
    kept = sum(label == stop_id for e in encoded if e.cut is not None for label in e.cut.labels)
    if pad_id is None:
        return Finding("PAD and EOS", OK, "no PAD token; training packs rows without padding, and batched "
                       "generation pads with UNK or EOS")
    if pad_id == stop_id or pad_id == tokenizer.eos_token_id:
        return Finding("PAD and EOS", NOTE, f"PAD is {pad!r}, the same token as the end of an answer: tunesmith "
                       f"takes labels from the answer masks, never from PAD ids, so all {kept} end-of-answer labels "
                       "stay in the loss", "nothing to do here; with other tools that set labels to -100 wherever "
                       "the id equals PAD, give the tokenizer a separate PAD token or the model never learns to stop")
    return Finding("PAD and EOS", OK, f"PAD {pad!r} is not the end-of-answer token {stop!r}; {kept} end-of-answer "
                   "labels in the loss")


def bos(tokenizer, encoded: list[Encoded]) -> Finding:
    bos_id = tokenizer.bos_token_id
    rows = [e.cut for e in encoded if e.cut is not None]
    doubled = sum(ex.input_ids[:2] == [bos_id, bos_id] for ex in rows) if bos_id is not None else 0
    if doubled:
        return Finding("BOS", PROBLEM, f"{doubled} of {len(rows)} rows start with BOS twice",
                       "the chat template writes BOS as text while the tokenizer adds one too: use a template that "
                       "writes {{ bos_token }} (tunesmith then adds none), or template=auto")
    first = sum(bool(ex.input_ids) and ex.input_ids[0] == bos_id for ex in rows) if bos_id is not None else 0
    what = f"{first} of {len(rows)} rows start with one BOS {tokenizer.bos_token!r}" if first else \
        "no row starts with BOS (this tokenizer and template use none)"
    return Finding("BOS", OK, what + "; none has two")


def saved_template(template: Template, tokenizer, items: list) -> Finding:
    """What the run will save (the tokenizer with the training template applied, as train does it),
    reloaded as chat and serve load it: the same template, the same end-of-answer token, the same prompts."""
    import copy

    from transformers import AutoTokenizer

    saved = copy.deepcopy(tokenizer)
    template.apply_to(saved)
    with tempfile.TemporaryDirectory() as folder:
        saved.save_pretrained(folder)
        reloaded = AutoTokenizer.from_pretrained(folder)
    chat = get_template("auto", reloaded)
    stops = {reloaded.eos_token, chat.stop}
    if chat.chat_template != template.chat_template:
        return Finding("saved template", PROBLEM, "the template chat and serve read from the run differs from the "
                       "training template", "report this as a tunesmith bug, with the config")
    if template.stop not in stops:
        return Finding("saved template", PROBLEM, f"chat would stop on {sorted(stops)}, not on the trained "
                       f"{template.stop!r}", "report this as a tunesmith bug, with the config")
    prompts = [i.messages for i in items[:20] if isinstance(i, (Conversation, Preference))]
    for messages in prompts:
        head = messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages
        if template.render(tokenizer, head, True) != chat.render(reloaded, head, True):
            return Finding("saved template", PROBLEM, "a prompt renders differently after the run is saved",
                           "report this as a tunesmith bug, with the config")
    return Finding("saved template", OK, f"chat and serve will use the training template ({template.name}) and "
                   f"stop on {template.stop!r}; {len(prompts)} prompts render identically after saving")


def cutoff(encoded: list[Encoded], cutoff_len: int, documents: bool) -> Finding:
    if documents:
        return Finding("cutoff_len", OK, f"documents are split into rows of cutoff_len={cutoff_len} tokens; "
                       "nothing is lost")
    lengths = sorted(len(e.full) for e in encoded if e.full is not None)
    truncated = [e for e in encoded if e.full is not None and len(e.full) > cutoff_len]
    dropped = sum(e.cut is None for e in encoded)
    lose_end = sum(e.cut is not None and any(label != IGNORE for label in e.full.labels[cutoff_len:])
                   for e in truncated)
    if not truncated:
        return Finding("cutoff_len", OK, f"no row is cut: the longest of {len(encoded)} is "
                       f"{lengths[-1] if lengths else 0} tokens, cutoff_len={cutoff_len}")
    longest, p95 = lengths[-1], lengths[int(0.95 * (len(lengths) - 1))]
    fix = f"raise cutoff_len to {longest} (every row whole) or {p95} (95% of rows), or shorten the long rows"
    if not (dropped or lose_end):
        return Finding("cutoff_len", NOTE, f"cutoff_len={cutoff_len} cuts {len(truncated)} of {len(encoded)} rows, "
                       "only after their answers", fix)
    return Finding("cutoff_len", PROBLEM, f"cutoff_len={cutoff_len} cuts {len(truncated)} of {len(encoded)} rows: "
                   f"{lose_end} lose the end of their answer, end-of-turn token included (the model learns answers "
                   f"that never stop), {dropped} lose their whole answer (training skips them)", fix)


def _key(item) -> tuple:
    if isinstance(item, Document):
        return (item.text,)
    messages = tuple((m["role"], m["content"].strip()) for m in item.messages)
    return (item.system or "", messages) + ((item.chosen, item.rejected) if isinstance(item, Preference) else ())


def _prompt_key(item) -> tuple:
    if isinstance(item, Document):
        return (item.text,)
    messages = item.messages[:-1] if isinstance(item, Conversation) else item.messages
    return (item.system or "", tuple((m["role"], m["content"].strip()) for m in messages))


def answers(items: list) -> Finding:
    if items and isinstance(items[0], Document):
        empty = sum(not i.text.strip() for i in items)
        return Finding("answers", PROBLEM if empty else OK, f"{empty} empty documents of {len(items)}",
                       "delete the empty rows" if empty else "")
    replies = [m["content"].strip() for i in items if isinstance(i, Conversation)
               for m in i.messages if m["role"] == "assistant"]
    empty = sum(not r for r in replies)
    same = sum(isinstance(i, Preference) and i.chosen.strip() == i.rejected.strip() for i in items)
    copies = sum(n - 1 for n in Counter(_key(i) for i in items).values() if n > 1)
    problems = []
    if empty:
        problems.append(f"{empty} empty answers")
    if same:
        problems.append(f"{same} pairs whose chosen and rejected answers are the same")
    if copies:
        problems.append(f"{copies} rows repeat another row exactly")
    common, count = Counter(replies).most_common(1)[0] if replies else ("", 0)
    if problems:
        return Finding("answers", PROBLEM, "; ".join(problems) + f" (of {len(items)} rows)",
                       "delete or fix those rows: empty and identical answers teach nothing, and repeated rows "
                       "count several times")
    if count >= 3 and count > 0.05 * len(replies):
        return Finding("answers", NOTE, f"{count} of {len(replies)} answers are the same text: {common[:60]!r}",
                       "fine if intended (a refusal, a fixed reply); otherwise the model learns to say it often")
    return Finding("answers", OK, f"{len(replies) or len(items)} answers, none empty, no repeated rows")


def placeholders(items: list) -> Finding:
    """Template slots left unfilled in the answers, like {{name}} in LLaMA-Factory's identity.json."""
    rows, found = unfilled_placeholders(items)
    if rows < 2:  # one row may quote a template on purpose; a dataset of slots is a recipe not yet filled in
        return Finding("placeholders", OK, "no unfilled {{...}} placeholders in the answers")
    listed = ", ".join(f"{{{{{name}}}}} ({count} rows)" for name, count in found.most_common(4))
    return Finding("placeholders", PROBLEM, f"{rows} of {len(items)} rows have unfilled placeholders in their "
                   f"answers: {listed}", "replace them with the real text before training (LLaMA-Factory's "
                   "identity.json is meant to be edited: sed -i 's/{{name}}/YourBot/g; s/{{author}}/You/g' FILE); "
                   "the model would learn to say them as they are")


def overlap(train: list, val: list, spec) -> Finding:
    if not val:
        return Finding("train / validation", OK, "no validation rows (val_size=0 and no val_dataset); eval loss "
                       "is not computed")
    seen = {_prompt_key(i) for i in train}
    shared = sum(_prompt_key(i) in seen for i in val)
    if shared:
        source = "val_dataset" if spec.val_dataset else f"val_size={spec.val_size}"
        return Finding("train / validation", PROBLEM, f"{shared} of {len(val)} validation rows ({source}) ask a "
                       "question a training row asks too: eval loss rewards memorising, not generalising",
                       "remove the repeated questions from the data (or from val_dataset)")
    return Finding("train / validation", OK, f"none of the {len(val)} validation rows repeats a training question")

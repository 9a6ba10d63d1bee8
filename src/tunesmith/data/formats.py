"""Every supported row format becomes one canonical form: a `Conversation` (optional system + user/assistant turns)
or, for pretraining, a `Document`. Bad rows stop here, before any model is loaded, with `path:line: what; fix`.

Formats (auto-detected from the first row's columns, or forced with `dataset_format`):
- alpaca:   instruction, input (optional), output, system (optional), history (optional [[q, a], ...]).
            Also accepted (ALIASES): prompt/question/query for instruction, context for input,
            response/completion/answer for output, system_prompt for system.
- sharegpt: conversations: [{from: human|gpt|system, value}], system (optional). Turns without roles are read
            as LIMA and Capybara publish them: a list of texts (user first), or [{input, output}] exchanges.
- openai:   messages: [{role: system|user|assistant, content}] (also under conversations, or conversation as in
            lmsys-chat-1m and WildChat; or TRL's conversational prompt + completion turns); content may be a list
            of parts, whose text parts are kept (OpenAI's {type: text, text}, LLaMA-Factory v1's {type: text,
            value}); an answer with `loss_weight: 0` (v1) is context, not learnt.
- text:     text, or content as code corpora name it (raw documents, for pretraining). For stage=sft, a text that
            is a rendered chat (Guanaco's "### Human:", HH-RLHF, Llama 2's [INST], ChatML, Llama 3; see
            data.transcripts) is read back as its turns.
- preference (stages rm, dpo): chosen + rejected answers to a prompt given as `prompt` (text or a list of
            messages), `instruction`/`input`, or `messages`/`conversations` ending with a user turn. chosen/rejected
            are text, a message {role/from, content/value}, or (TRL style) whole conversations sharing the prompt,
            or whole rendered chats sharing the prompt (Anthropic HH-RLHF's "\n\nHuman: ... \n\nAssistant: ...").
            `question` and `system` name the prompt too (Intel/orca_dpo_pairs); LLaMA-Factory v1 names the
            conversations chosen_messages and rejected_messages.
`columns` renames the user's columns to these names first, e.g. columns={instruction: question, output: answer}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunesmith.data.sources import Row
from tunesmith.data.transcripts import read_transcript
from tunesmith.errors import DataError

# Other names public datasets give these columns: Dolly (context, response), GSM8K (question, answer), MetaMathQA
# (query), OpenOrca (system_prompt, question, response), OpenAI's legacy fine-tuning files (prompt, completion),
# code corpora such as The Stack (content).
ALIASES = {"instruction": ("prompt", "question", "query"), "input": ("context",),
           "output": ("response", "completion", "answer"), "system": ("system_prompt",), "text": ("content",),
           "chosen": ("chosen_messages",), "rejected": ("rejected_messages",)}
SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
    "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "system": "system",
}
OPENAI_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "developer": "system"}
TOOL_ROLES = {"tool", "function", "function_call", "observation", "ipython"}
TURN_KEYS = ("conversations", "conversation")  # a list of turns under either name


@dataclass
class Conversation:
    messages: list[dict[str, Any]]  # alternating user / assistant, ending with assistant; an answer with
    # "train": False is context only (a zero loss_weight), not in the loss
    system: str | None = None
    location: str = ""


@dataclass
class Preference:
    """A prompt (turns ending with a user turn) with a better and a worse answer."""

    messages: list[dict[str, str]]
    chosen: str
    rejected: str
    system: str | None = None
    location: str = ""

    def conversation(self, answer: str) -> Conversation:
        return Conversation([*self.messages, {"role": "assistant", "content": answer}], self.system, self.location)


@dataclass
class Document:
    text: str
    location: str = ""
    system: str | None = None  # the `system` setting, for a text that is a chat transcript (see as_conversation)

    def as_conversation(self) -> tuple[str, Conversation] | None:
        """(transcript style, the turns) when the text is a chat another tool rendered (data.transcripts), else
        None. A transcript whose turns break the conversation rules is refused with its row and style."""
        read = read_transcript(self.text)
        if read is None:
            return None
        style, turns = read
        conv = _turns(_Ctx(f"{self.location} (text read as {style} chat)"), turns, "text", "role", "content",
                      OPENAI_ROLES)
        conv.system, conv.location = conv.system or self.system, self.location
        return style, conv


@dataclass
class _Ctx:
    location: str
    fields: dict[str, Any] = field(default_factory=dict)

    def fail(self, what: str, fix: str) -> DataError:
        return DataError(f"{self.location}: {what}; {fix}")


def detect_format(row: dict[str, Any]) -> str:
    if _column(row, "chosen") in row and _column(row, "rejected") in row:  # (LLaMA-Factory v1: chosen_messages)
        return "preference"
    if "messages" in row or _prompt_completion_turns(row):
        return "openai"
    key = next((k for k in TURN_KEYS if k in row), None)
    if key is not None:
        turns = row[key]  # not a list (5, {...}): sharegpt's converter names the key and the fix
        first = turns[0] if isinstance(turns, list) and turns else None
        return "openai" if isinstance(first, dict) and "role" in first else "sharegpt"
    keys = set(row)
    if ({"instruction", *ALIASES["instruction"]} & keys) and ({"output", *ALIASES["output"]} & keys):
        return "alpaca"
    if "text" in keys or ("content" in keys and "role" not in keys):  # content: code corpora (The Stack)
        return "text"  # (a message of a conversation, {role, content}, is not a document)
    return "unknown"


def to_canonical(rows: list[Row], fmt: str = "auto", columns: dict[str, str] | None = None,
                 system: str | None = None) -> list[Conversation | Document]:
    if not rows:
        return []
    rows = [(loc, _rename(loc, obj, columns or {})) for loc, obj in rows]
    if fmt == "auto":
        fmt = detect_format(rows[0][1])
        if fmt == "text" and {"message_id", "parent_id", "role"} <= set(rows[0][1]):
            raise DataError(f"{rows[0][0]}: one message of a message tree (OpenAssistant's oasst1/oasst2: message_id, "
                            "parent_id), not a conversation; train on its conversations, e.g. "
                            "OpenAssistant/oasst_top1_2023-08-25, or set dataset_format=text to read each message "
                            "as a document")
        if fmt == "unknown":
            loc, obj = rows[0]
            # A CSV without a header row: its first data row became the column names.
            header = " (the first line of a CSV must be its header, e.g. instruction,output)" \
                if loc.rsplit(":", 1)[0].lower().endswith(".csv") else ""
            raise DataError(
                f"{loc}: cannot tell the data format from the columns {_short(sorted(obj))}{header}; use alpaca "
                "(instruction/output), sharegpt (conversations), openai (messages) or text, or map your columns "
                "with columns={instruction: your_question_column, output: your_answer_column}"
            )
    convert = {"alpaca": _alpaca, "sharegpt": _sharegpt, "openai": _openai, "text": _text,
               "preference": _preference}[fmt]
    out = []
    for loc, obj in rows:
        item = convert(_Ctx(loc), obj)
        if item.system is None:
            item.system = system
        out.append(item)
    return out


def _rename(loc: str, obj: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    if not columns:
        return obj
    obj = dict(obj)
    for canonical, theirs in columns.items():
        if theirs not in obj:
            raise DataError(f"{loc}: column '{theirs}' (mapped to '{canonical}') is missing; the row has "
                            f"{sorted(obj)}; fix the columns mapping")
        obj[canonical] = obj.pop(theirs)
    return obj


def _column(obj: dict[str, Any], canonical: str) -> str:
    """The row's own name for a canonical column: itself, or the first of its ALIASES the row has."""
    return next((name for name in (canonical, *ALIASES.get(canonical, ())) if name in obj), canonical)


def _text_field(ctx: _Ctx, obj: dict[str, Any], column: str, required: bool) -> str | None:
    """obj[column] as text (a number is written out); messages name `column`, the row's own name for it."""
    value = obj.get(column)
    if value is None or (isinstance(value, float) and value != value):  # None or NaN (empty csv/parquet cell)
        if required:
            raise ctx.fail(f"'{column}' is missing", f"add a non-empty '{column}' to this row or delete the row")
        return None
    text = _as_text(value)
    if text is None:
        raise ctx.fail(f"'{column}' should be text, got {type(value).__name__} {_short(value)}",
                       "quote the value as a string")
    if required and not text.strip():
        raise ctx.fail(f"'{column}' is empty", f"write the {column} or delete the row")
    return text


def _as_text(value: Any) -> str | None:
    """Text, or a number written as text (GSM8K-style answers, an integer parquet column); None for anything else
    (a bool, a list, an object: no one text it stands for)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        # 42.0: an integer column that had an empty cell, which pandas and parquet turn into floats
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    return None


def _short(value: Any, limit: int = 60) -> str:
    """A value for a one-line message: a 100 KB cell or a deeply nested list must not become the message."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply>"
    return text if len(text) <= limit else text[:limit] + "..."


def _prompt_completion_turns(row: dict[str, Any]) -> bool:
    """TRL's conversational prompt-completion row: the prompt's turns, then the completion's."""
    return isinstance(row.get("prompt"), list) and "completion" in row


def _refuse_unpaired(ctx: _Ctx, obj: dict[str, Any]) -> None:
    """TRL's unpaired preference rows (KTO): prompt, completion and a true/false label. A false one is a bad answer,
    which supervised training would teach."""
    if isinstance(obj.get("label"), bool) and "completion" in obj:
        raise ctx.fail("a prompt-completion row with a true/false 'label' is KTO data (unpaired preferences), whose "
                       "rejected completions must not be learnt", "train stage=sft on the rows labelled true only, "
                       "or pair good and bad answers to one prompt for stage=dpo")


def _alpaca(ctx: _Ctx, obj: dict[str, Any]) -> Conversation:
    _refuse_unpaired(ctx, obj)
    instruction = _text_field(ctx, obj, _column(obj, "instruction"), required=True)
    extra = _text_field(ctx, obj, _column(obj, "input"), required=False)
    output = _text_field(ctx, obj, _column(obj, "output"), required=True)
    messages: list[dict[str, str]] = []
    history = obj.get("history") or []
    if not isinstance(history, list):
        raise ctx.fail("'history' should be a list of [question, answer] pairs", "fix or remove 'history'")
    for turn in history:
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) and t for t in turn)):
            raise ctx.fail(f"history entry {_short(turn)} is not a [question, answer] pair of text",
                           "write each entry as [\"question\", \"answer\"]")
        messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return Conversation(messages, _text_field(ctx, obj, _column(obj, "system"), required=False), ctx.location)


def _turns(ctx: _Ctx, items: Any, key: str, role_key: str, text_key: str, roles: dict[str, str]) -> Conversation:
    if not isinstance(items, list) or not items:
        got = "an empty list" if isinstance(items, list) else f"{type(items).__name__} {_short(items)}"
        raise ctx.fail(f"'{key}' should be a non-empty list of turns, got {got}", f"write {key}: [{{{role_key}: ..., "
                       f"{text_key}: ...}}, ...]")
    system, messages = None, []
    for i, turn in enumerate(items, 1):
        tool_turn = isinstance(turn, dict) and (turn.get("tool_calls") or turn.get("function_call")
                                                 or str(turn.get(role_key)).lower() in TOOL_ROLES)
        if tool_turn:  # OpenAI tool_calls / tool results, LLaMA-Factory's function_call / observation turns
            raise ctx.fail(f"turn {i} is a tool call or a tool result: training on tool use is not supported",
                           "leave such rows out, or keep only their user and assistant text turns")
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise ctx.fail(f"turn {i} of '{key}' needs '{role_key}' and '{text_key}'", "fix that turn")
        raw_role, content = turn[role_key], _content_text(ctx, turn[text_key], i)
        role = roles.get(str(raw_role).lower())
        if role is None:
            raise ctx.fail(f"turn {i} has unknown role {_short(raw_role)}", f"use one of {', '.join(sorted(roles))}")
        if role == "system":
            if messages:
                raise ctx.fail(f"turn {i} is a system message after the conversation started",
                               "move the system message to the first turn")
            system = content
            continue
        expected = "user" if len(messages) % 2 == 0 else "assistant"
        if role != expected:
            raise ctx.fail(f"turn {i} is '{raw_role}' but a {expected} turn was expected (turns must alternate "
                           "user, assistant)", "merge or reorder the turns")
        if role == "assistant" and not content.strip():
            raise ctx.fail(f"turn {i} is an empty answer", "write the answer or delete the row")
        messages.append({"role": role, "content": content})
        if role == "assistant" and turn.get("loss_weight", 1) == 0:  # LLaMA-Factory v1: context, not to be learnt
            messages[-1]["train"] = False
    if not messages or messages[-1]["role"] != "assistant":
        raise ctx.fail("the conversation does not end with an answer", "add the assistant's reply as the last turn")
    if all(m.get("train") is False for m in messages if m["role"] == "assistant"):
        raise ctx.fail("every answer has loss_weight 0: nothing to learn", "give the answers to learn loss_weight 1, "
                       "or delete the row")
    return Conversation(messages, system, ctx.location)


def _content_text(ctx: _Ctx, content: Any, turn: int) -> str:
    text = _as_text(content)
    if isinstance(content, list):  # an image, audio or reasoning part would be dropped from what the model sees
        other = sorted({str(p.get("type")) for p in content if isinstance(p, dict) and p.get("type") != "text"})
        if other:
            raise ctx.fail(f"turn {turn} has {', '.join(other)} content: tunesmith trains on text",
                           "leave such rows out, or keep only their text parts")
        text = _parts_text(content)
    if text is None:
        raise ctx.fail(f"turn {turn} content should be text, got {type(content).__name__}",
                       "write the content as a string")
    return text


def _parts_text(content: Any) -> str | None:
    """The text of content parts, OpenAI's [{type: text, text}] or LLaMA-Factory v1's [{type: text, value}]."""
    if not isinstance(content, list):
        return None
    parts = [p.get("text", p.get("value", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return "".join(parts) if parts else None


def _sharegpt(ctx: _Ctx, obj: dict[str, Any]) -> Conversation:
    key = next((k for k in TURN_KEYS if k in obj), TURN_KEYS[0])
    conv = _turns(ctx, _with_roles(obj.get(key)), key, "from", "value", SHAREGPT_ROLES)
    conv.system = conv.system or _text_field(ctx, obj, _column(obj, "system"), required=False)
    return conv


def _with_roles(turns: Any) -> Any:
    """Turns published without roles, as sharegpt turns: LIMA's list of texts (user, assistant, user, ...) and
    Capybara's [{input, output}] exchanges. Anything else is returned as it is, for _turns to check."""
    if not isinstance(turns, list) or not turns:
        return turns
    if all(isinstance(t, str) for t in turns):
        return [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(turns)]
    if all(isinstance(t, dict) and {"input", "output"} <= set(t) and "from" not in t for t in turns):
        return [{"from": role, "value": t[key]} for t in turns for role, key in (("human", "input"), ("gpt", "output"))]
    return turns


def _openai(ctx: _Ctx, obj: dict[str, Any]) -> Conversation:
    key = next((k for k in ("messages", *TURN_KEYS) if k in obj), "messages")
    if key not in obj and _prompt_completion_turns(obj):
        _refuse_unpaired(ctx, obj)
        completion = obj["completion"]
        turns = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
        return _turns(ctx, [*obj["prompt"], *turns], "prompt", "role", "content", OPENAI_ROLES)
    return _turns(ctx, obj.get(key), key, "role", "content", OPENAI_ROLES)


def _text(ctx: _Ctx, obj: dict[str, Any]) -> Document:
    return Document(_text_field(ctx, obj, _column(obj, "text"), required=True) or "", ctx.location)


def _preference(ctx: _Ctx, obj: dict[str, Any]) -> Preference:
    chosen, rejected = obj.get(_column(obj, "chosen")), obj.get(_column(obj, "rejected"))
    prompt = obj.get("prompt", obj.get("messages", obj.get("conversations")))
    if prompt is None and all(transcripts := (_transcript(chosen), _transcript(rejected))):
        chosen, rejected = transcripts
    if isinstance(chosen, list) and isinstance(rejected, list) and not isinstance(prompt, list):
        # TRL's implicit prompt: both conversations share everything but the last answer. Where a row also has a
        # prompt string (mlabonne/orpo-dpo-mix-40k), the shared turns still win: they keep the system message
        # and the earlier turns that the string leaves out.
        if chosen[:-1] and chosen[:-1] == rejected[:-1]:
            prompt = chosen[:-1]
        elif prompt is None:
            raise ctx.fail("chosen and rejected conversations differ before their last answer",
                           "make them share the prompt turns, or give 'prompt' separately")
    if isinstance(prompt, list):
        conv = _prompt_turns(ctx, prompt)
        messages, system = conv.messages[:-1], conv.system
    elif isinstance(prompt, str) and prompt.strip():
        messages, system = [{"role": "user", "content": prompt}], None
    elif {"instruction", *ALIASES["instruction"]} & set(obj):
        conv = _alpaca(ctx, {**obj, "output": "-"})
        messages, system = conv.messages[:-1], conv.system
    else:
        raise ctx.fail("a preference row needs the prompt", "add 'prompt' (or 'instruction', 'question', or "
                       "'messages')")
    return Preference(messages, _answer(ctx, chosen, "chosen"), _answer(ctx, rejected, "rejected"),
                      system or _text_field(ctx, obj, "system", required=False), ctx.location)


def _transcript(value: Any) -> list[dict[str, str]] | None:
    """A whole rendered chat (HH-RLHF's "\n\nHuman: Q\n\nAssistant: A ...", ChatML, ...) as turns, else None."""
    read = read_transcript(value) if isinstance(value, str) else None
    return read[1] if read else None


def _prompt_turns(ctx: _Ctx, turns: list) -> Conversation:
    """Validate prompt turns with the conversation rules by closing them with a placeholder answer."""
    sharegpt = bool(turns) and isinstance(turns[0], dict) and "from" in turns[0]
    role, text = ("from", "value") if sharegpt else ("role", "content")
    roles = SHAREGPT_ROLES if sharegpt else OPENAI_ROLES
    return _turns(ctx, [*turns, {role: "assistant", text: "-"}], "prompt", role, text, roles)


def _answer(ctx: _Ctx, value: Any, name: str) -> str:
    if isinstance(value, list) and value:
        value = value[-1]
    if isinstance(value, dict):
        value = value.get("content", value.get("value"))
        value = _parts_text(value) if isinstance(value, list) else value
    if not isinstance(value, str) or not value.strip():
        raise ctx.fail(f"'{name}' is missing or empty", f"write the {name} answer as text")
    return value

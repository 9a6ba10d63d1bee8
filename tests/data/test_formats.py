import json

import pytest

from tests.conftest import write_jsonl
from tunesmith.data.formats import Conversation, Document, detect_format, to_canonical
from tunesmith.data.sources import read_rows
from tunesmith.errors import DataError

EXPECTED = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}]


def load(path, fmt="auto", columns=None):
    return to_canonical(read_rows(str(path)), fmt, columns)


def test_alpaca_with_input_system_history(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"instruction": "Translate", "input": "hi", "output": "안녕", "system": "Be brief.",
         "history": [["Q0", "A0"]]},
    ])
    [conv] = load(path)
    assert conv.system == "Be brief."
    assert conv.messages == [{"role": "user", "content": "Q0"}, {"role": "assistant", "content": "A0"},
                             {"role": "user", "content": "Translate\n\nhi"}, {"role": "assistant", "content": "안녕"}]
    assert conv.location == f"{path}:1"


def test_sharegpt_roles_and_system(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [
        {"from": "system", "value": "S"}, {"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}]}])
    [conv] = load(path)
    assert conv.system == "S" and conv.messages == EXPECTED


def test_openai_messages_and_content_parts(tmp_path):
    path = write_jsonl(tmp_path / "o.jsonl", [{"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Q1"}]}, {"role": "assistant", "content": "A1"}]}])
    [conv] = load(path)
    assert conv.messages == EXPECTED


def test_json_array_csv_parquet_and_column_mapping(tmp_path):
    rows = [{"question": "Q1", "reply": "A1"}, {"question": "Q2", "reply": "A2"}]
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=2))
    (tmp_path / "a.csv").write_text("question,reply\nQ1,A1\nQ2,A2\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    for name in ("a.json", "a.csv", "a.parquet"):
        convs = load(tmp_path / name, columns={"output": "reply"})
        assert [c.messages for c in convs][0] == EXPECTED, name
    assert load(tmp_path / "a.json", columns={"output": "reply"})[1].location.endswith("a.json:6")
    assert load(tmp_path / "a.csv", columns={"output": "reply"})[1].location.endswith("a.csv:3")


def test_numbers_are_text_where_text_is_expected(tmp_path):
    """GSM8K-style numeric answers, an integer parquet column with an empty cell (read back as floats), numeric
    sharegpt turns: each number trains as it is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_jsonl(tmp_path / "n.jsonl", [{"question": "1+1?", "answer": 2}, {"question": 7, "answer": -0.25}])
    assert [c.messages[-1]["content"] for c in load(tmp_path / "n.jsonl")] == ["2", "-0.25"]
    assert load(tmp_path / "n.jsonl")[1].messages[0]["content"] == "7"
    pq.write_table(pa.Table.from_pylist([{"question": "a", "answer": 3.0}, {"question": "b", "answer": None},
                                         {"question": "c", "answer": 1.5}]), tmp_path / "n.parquet")
    with pytest.raises(DataError, match=r"n.parquet:row 2: 'answer' is missing"):
        load(tmp_path / "n.parquet")
    pq.write_table(pa.Table.from_pylist([{"question": "a", "answer": 3.0}, {"question": "c", "answer": 1.5}]),
                   tmp_path / "n.parquet")
    assert [c.messages[-1]["content"] for c in load(tmp_path / "n.parquet")] == ["3", "1.5"]
    turns = [{"from": "human", "value": 12}, {"from": "gpt", "value": 13}]
    write_jsonl(tmp_path / "s.jsonl", [{"conversations": turns}])
    assert [m["content"] for m in load(tmp_path / "s.jsonl")[0].messages] == ["12", "13"]


def test_public_datasets_column_names_and_turns_without_roles(tmp_path):
    """OpenOrca (system_prompt, question, response), MetaMathQA (query, response), LIMA (a list of texts) and
    Capybara ([{input, output}]): read as published, the system prompt kept."""
    orca_row = {"id": "1", "system_prompt": "Be brief.", "question": "Q1", "response": "A1"}
    write_jsonl(tmp_path / "orca.jsonl", [orca_row])
    [orca] = load(tmp_path / "orca.jsonl")
    assert (orca.system, orca.messages) == ("Be brief.", EXPECTED)
    write_jsonl(tmp_path / "mm.jsonl", [{"query": "Q1", "response": "A1", "type": "GSM_Rephrased"}])
    assert load(tmp_path / "mm.jsonl")[0].messages == EXPECTED
    turns = ["Q1", "A1", "Q2", "A2"]
    write_jsonl(tmp_path / "lima.jsonl", [{"conversations": turns, "source": "stackexchange"}])
    write_jsonl(tmp_path / "capy.jsonl", [{"conversation": [{"input": "Q1", "output": "A1"},
                                                             {"input": "Q2", "output": "A2"}]}])
    for name in ("lima.jsonl", "capy.jsonl"):
        [conv] = load(tmp_path / name)
        assert [m["content"] for m in conv.messages] == turns and conv.messages[:2] == EXPECTED, name
    write_jsonl(tmp_path / "odd.jsonl", [{"conversations": ["Q1", "A1", "Q2"]}])
    with pytest.raises(DataError, match="odd.jsonl:1: the conversation does not end with an answer"):
        load(tmp_path / "odd.jsonl")


def test_text_format(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "a document"}])
    assert load(path) == [Document("a document", f"{path}:1")]
    write_jsonl(tmp_path / "code.jsonl", [{"content": "def f():\n    pass\n", "lang": "Python"}])  # The Stack
    assert load(tmp_path / "code.jsonl") == [Document("def f():\n    pass\n", f"{tmp_path / 'code.jsonl'}:1")]
    write_jsonl(tmp_path / "flat.jsonl", [{"role": "user", "content": "hi"}])  # one message per line: not documents
    with pytest.raises(DataError, match="cannot tell the data format"):
        load(tmp_path / "flat.jsonl")
    (tmp_path / "t.txt").write_text("doc one\nline two\n\ndoc two\n")
    assert [d.text for d in load(tmp_path / "t.txt")] == ["doc one\nline two", "doc two"]


GOOD = '{"instruction": "Q", "output": "A"}'


@pytest.mark.parametrize("bad_line, message", [
    ('{"instruction": "Q", "output": "A"', "invalid JSON"),
    ('{"instruction": "Q"}', "'output' is missing"),
    ('{"instruction": "Q", "output": "  "}', "'output' is empty"),
    ('{"instruction": "Q", "output": ["A"]}', "'output' should be text, got list"),
    ('{"instruction": "Q", "answer": true}', "'answer' should be text, got bool"),  # the row's own column
    ('["Q", "A"]', "expected a JSON object"),
])
def test_malformed_alpaca_row_names_its_line(tmp_path, bad_line, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD] * 6 + [bad_line] + [GOOD])
    with pytest.raises(DataError) as err:
        load(path)
    text = str(err.value)
    assert text.startswith(f"{path}:7: ") and message in text and "; " in text
    assert "\n" not in text


def test_conversation_key_of_lmsys_chat_and_wildchat(tmp_path):
    row = {"conversation_id": "c1", "model": "m", "turn": 1, "language": "English",
           "conversation": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    path = write_jsonl(tmp_path / "lmsys.jsonl", [row])
    assert load(path) == [Conversation([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
                                       None, f"{path}:1")]
    row["conversation"] = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]
    assert load(write_jsonl(path, [row]))[0].messages[1] == {"role": "assistant", "content": "Hello"}


def test_a_json_line_cut_short_names_the_column_where_it_ends(tmp_path):
    path = write_jsonl(tmp_path / "cut.jsonl", [GOOD, '{"instruction": "Q", "output": ', GOOD])
    with pytest.raises(DataError) as err:
        load(path)
    assert str(err.value) == f"{path}:2: invalid JSON (Expecting value at column 32); fix or delete the line"


@pytest.mark.parametrize("row", [
    {"messages": [{"role": "user", "content": "Weather?"},
                  {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {
                      "name": "get_weather", "arguments": "{}"}}]},
                  {"role": "tool", "content": "{}"}, {"role": "assistant", "content": "Sunny."}]},
    {"conversations": [{"from": "human", "value": "Weather?"}, {"from": "function_call", "value": "{}"},
                       {"from": "observation", "value": "{}"}, {"from": "gpt", "value": "Sunny."}]},
])
def test_tool_calling_rows_are_refused_by_name(tmp_path, row):
    path = write_jsonl(tmp_path / "tools.jsonl", [row])
    with pytest.raises(DataError) as err:
        load(path)
    assert str(err.value) == (f"{path}:1: turn 2 is a tool call or a tool result: training on tool use is not "
                              "supported; leave such rows out, or keep only their user and assistant text turns")


@pytest.mark.parametrize("turns, message", [
    ([{"from": "human", "value": "Q"}, {"from": "robot", "value": "A"}], "unknown role 'robot'"),
    ([{"from": "human", "value": "Q"}], "does not end with an answer"),
    ([{"from": "human", "value": "Q"}, {"from": "gpt", "value": ""}], "empty answer"),
    ([{"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}], "a user turn was expected"),
    ([{"from": "human"}], "needs 'from' and 'value'"),
])
def test_malformed_sharegpt(tmp_path, turns, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"conversations": turns}])
    with pytest.raises(DataError, match=message):
        load(path)


def test_unknown_format_explains_columns(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"foo": 1}])
    with pytest.raises(DataError, match="cannot tell the data format"):
        load(path)


def test_missing_file_and_mapped_column(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_rows(str(tmp_path / "nope.jsonl"))
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Q", "output": "A"}])
    with pytest.raises(DataError, match="column 'answer'"):
        load(path, columns={"output": "answer"})


def test_conversation_type(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "Q1", "completion": "A1"}])
    [conv] = load(path)
    assert isinstance(conv, Conversation) and conv.messages == EXPECTED


@pytest.mark.parametrize("value", [5, {"from": "human", "value": "Q"}, "text", None, [], ["Q"]])
def test_detect_format_takes_any_conversations_value(value):
    # the converter, not detection, reports a wrong value, with the row's location
    assert detect_format({"conversations": value}) == "sharegpt"
    assert detect_format({"conversations": [{"role": "user", "content": "Q"}]}) == "openai"


def test_a_message_tree_row_is_named_not_trained_as_text(tmp_path):
    """OpenAssistant/oasst1 publishes one message per row (message_id, parent_id, role, text)."""
    row = {"message_id": "b", "parent_id": "a", "text": "4.", "role": "assistant", "lang": "en", "rank": 0}
    path = write_jsonl(tmp_path / "oasst.jsonl", [row])
    with pytest.raises(DataError, match=r"oasst\.jsonl:1: one message of a message tree .*/oasst_top1_2023-08-25"):
        to_canonical(read_rows(str(path)))
    assert [d.text for d in to_canonical(read_rows(str(path)), "text")] == ["4."]


def test_trl_conversational_prompt_completion_rows(tmp_path):
    """TRL's prompt-completion type: the prompt's turns (system included), then the completion's."""
    row = {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q1"}],
           "completion": [{"role": "assistant", "content": "A1"}]}
    [conv] = load(write_jsonl(tmp_path / "pc.jsonl", [row]))
    assert (conv.messages, conv.system) == (EXPECTED, "Be brief.")
    [conv] = load(write_jsonl(tmp_path / "pc2.jsonl", [{**row, "completion": "A1"}]))
    assert conv.messages == EXPECTED


@pytest.mark.parametrize("row", [
    {"prompt": [{"role": "user", "content": "Q1"}], "completion": [{"role": "assistant", "content": "A1"}],
     "label": False},
    {"prompt": "Q1", "completion": "A1", "label": False},
])
def test_unpaired_preference_rows_are_refused_not_learnt(tmp_path, row):
    with pytest.raises(DataError, match=r"kto\.jsonl:1: a prompt-completion row with a true/false 'label' is KTO"):
        load(write_jsonl(tmp_path / "kto.jsonl", [row]))

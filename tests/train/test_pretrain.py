"""Stage pt: raw documents + EOS, cut to cutoff_len, each chunk its own row; loss on every token."""

from tests.conftest import run_cli, write_jsonl
from tunesmith.data.dataset import encode_documents
from tunesmith.data.formats import Document
from tunesmith.data.packing import pack_step


def test_documents_end_with_eos_and_split_at_cutoff(tokenizer):
    docs = [Document("Haneul Bikes rents e-bikes in Seoul. " * 6, "a:1"), Document("짧은 문서.", "a:2")]
    examples = encode_documents(docs, tokenizer, cutoff_len=16, split="train")
    assert all(len(ex) <= 16 for ex in examples) and len(examples) >= 3
    assert all(ex.labels == ex.input_ids for ex in examples)  # loss on all tokens
    assert examples[-1].input_ids[-1] == tokenizer.eos_token_id
    joined = [t for ex in examples[:-1] for t in ex.input_ids]
    assert tokenizer.decode(joined) == docs[0].text + tokenizer.eos_token
    batch = pack_step(examples, token_budget=32)[0]
    assert batch.position_ids[0].tolist().count(0) == batch.num_rows  # every chunk restarts its positions
    assert batch.num_targets == batch.num_tokens - batch.num_rows  # every token but each row's last has a target


def test_pt_stage_from_cli(tiny_model_dir, tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("Haneul Bikes was founded in 2019.\n\nThe support line opens at 8 AM.\n\n" * 5)
    result = run_cli("train", f"model={tiny_model_dir}", f"dataset={text}", "stage=pt", "max_steps=3",
                     "cutoff_len=32", f"output_dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "adapter_model.safetensors").exists()


def test_pt_rejects_conversations(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "c.jsonl", [{"instruction": "Q", "output": "A"}])
    result = run_cli("train", f"model={tiny_model_dir}", f"dataset={data}", "stage=pt", "max_steps=1",
                     f"output_dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "stage=pt trains on raw text" in result.stderr

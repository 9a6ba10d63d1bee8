from tunesmith.data.packing import IGNORE, Example, pack_rows, pack_step


def ex(n, answer_from):
    ids = list(range(100, 100 + n))
    return Example(ids, [IGNORE] * answer_from + ids[answer_from:])


def test_pack_rows_positions_targets_and_bounds():
    mb = pack_rows([ex(4, 2), ex(3, 1)])
    assert mb.input_ids.tolist() == [[100, 101, 102, 103, 100, 101, 102]]
    assert mb.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2]]
    # target[t] = label[t + 1] inside a row; the last token of each row predicts nothing.
    assert mb.targets.tolist() == [[IGNORE, 102, 103, IGNORE, 101, 102, IGNORE]]
    assert mb.cu_seq_lens.tolist() == [0, 4, 7] and mb.max_row_len == 4
    assert mb.num_rows == 2 and mb.num_targets == 4


def test_pack_step_keeps_every_row_within_budget():
    rows = [ex(n, 1) for n in (9, 3, 7, 5, 2, 8, 4)]
    batches = pack_step(rows, token_budget=10)
    assert all(b.num_tokens <= 10 for b in batches)
    assert sum(b.num_rows for b in batches) == len(rows)
    assert sum(b.num_tokens for b in batches) == sum(len(r) for r in rows)
    assert len(batches) == 4  # 38 tokens need at least 4 bins of 10


def test_rows_side_by_side_are_right_padded_and_padding_is_never_a_target():
    from tunesmith.data.packing import pack_pairs, pad_rows

    mb = pad_rows([ex(4, 2), ex(2, 1)])
    assert mb.input_ids.tolist() == [[100, 101, 102, 103], [100, 101, 0, 0]]
    assert mb.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 0, 0]]
    assert mb.targets.tolist() == [[IGNORE, 102, 103, IGNORE], [101, IGNORE, IGNORE, IGNORE]]
    assert mb.row_index().tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and mb.row_ends().tolist() == [3, 5]
    assert (mb.num_tokens, mb.num_targets) == (6, 3)
    assert set(mb.model_inputs()) == {"input_ids", "position_ids"}  # no packing: each line is one row
    pairs = [(ex(4, 2), ex(3, 2)), (ex(2, 1), ex(5, 1))]
    assert [b.input_ids.shape for b in pack_pairs(pairs, 100, packed=False)] == [(2, 4), (2, 5)]
    assert [b.num_rows for b in pack_step([ex(3, 1)] * 3, 100, packed=False)] == [1, 1, 1]
    assert set(pack_rows([ex(3, 1)]).model_inputs()) == {"input_ids", "position_ids"}  # one row needs no bounds

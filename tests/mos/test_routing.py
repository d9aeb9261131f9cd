"""Index structure: private shards, distinct shared shards, pair dissociation, seeding."""

import copy

import pytest
import torch
from mos_helpers import mos_layers, mos_model

from open_instruct.mos.routing import build_index_lists


@pytest.mark.parametrize("r,e,p,c,L", [(3, 2, 1, 2, 2), (8, 4, 2, 4, 6), (5, 3, 0, 1, 4), (4, 4, 4, 1, 3)])
def test_index_lists_structure(r, e, p, c, L):
    g = torch.Generator().manual_seed(0)
    lists = build_index_lists(L, r, e, p, c, g)
    n_pool, p0 = e * L * c, (e - p) * L * c
    privates = []
    for layer, (ia, ib) in enumerate(lists):
        for idx in (ia, ib):
            assert idx.shape == (r * c,) and idx.dtype == torch.long
            assert int(idx.min()) >= 0 and int(idx.max()) < n_pool
            shared, private = idx[: (r - p) * c], idx[(r - p) * c :]
            assert len(set(shared.tolist())) == len(shared), "shared shards must be distinct within a list"
            assert all(s < p0 for s in shared.tolist())
            assert private.tolist() == list(range(p0 + layer * p * c, p0 + (layer + 1) * p * c))
        privates.append(set(ia[(r - p) * c :].tolist()))
    for i in range(L):  # private shards: disjoint across layers and in no other layer's list
        for j in range(L):
            if i != j:
                assert not privates[i] & privates[j]
                assert not privates[i] & set(lists[j][0].tolist()) and not privates[i] & set(lists[j][1].tolist())
    if r > p:  # pair dissociation: A and B pick shared shards independently
        assert any(not torch.equal(ia, ib) for ia, ib in lists)


def test_model_index_lists_and_seed(tiny_model):
    a = mos_layers(mos_model(copy.deepcopy(tiny_model), seed=7))
    b = mos_layers(mos_model(copy.deepcopy(tiny_model), seed=7))
    c = mos_layers(mos_model(copy.deepcopy(tiny_model), seed=8))
    same = all(torch.equal(a[n].mos_index_A["default"], b[n].mos_index_A["default"])
               and torch.equal(a[n].mos_index_B["default"], b[n].mos_index_B["default"]) for n in a)
    assert same
    for n in a:
        pa, pb = a[n].pool("default"), b[n].pool("default")
        assert torch.equal(pa.A["default"], pb.A["default"]) and torch.equal(pa.B["default"], pb.B["default"])
    assert any(not torch.equal(a[n].mos_index_A["default"], c[n].mos_index_A["default"]) for n in a)
    # Pools initialised as the original: A uniform within ±1/sqrt(in), B zeros.
    for layer in a.values():
        pool = layer.pool("default")
        assert pool.A["default"].abs().max() <= 1 / layer.in_features**0.5
        assert pool.A["default"].std() > 0 and torch.count_nonzero(pool.B["default"]) == 0


def test_materialised_a_is_concatenation_of_shards(tiny_llama):
    model = mos_model(tiny_llama, r=3, valid_param_lora_r=2, valid_param_private_r=1, num_chunk_per_vec=4)
    for layer in mos_layers(model).values():
        pool, idx = layer.pool("default"), layer.mos_index_A["default"]
        a, _ = layer.lora_factors("default")
        c = 4
        for j in range(layer.r["default"]):  # row j = cat(pool[idx[j*c]], ..., pool[idx[j*c+c-1]])
            expect = torch.cat([pool.A["default"][int(i)] for i in idx[j * c : (j + 1) * c]])
            torch.testing.assert_close(a[j], expect, rtol=0, atol=0)

"""Run finetune_trainer.main under torchrun and dump every rank's MoS pools at the end (for the DDP test)."""

import os
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

from open_instruct import finetune_trainer


class DumpPools(TrainerCallback):
    def on_train_end(self, args, state, control, model=None, **kwargs):
        pools = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if ".shared_pools." in n}
        rank = int(os.environ.get("RANK", 0))
        torch.save(pools, Path(args.output_dir) / f"pools_rank{rank}.pt")


if __name__ == "__main__":
    sys.exit(finetune_trainer.main(sys.argv[1:], callbacks=[DumpPools()]))

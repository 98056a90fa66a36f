"""Run by test_trainer.py under `torchrun --nproc_per_node 2`: trains the tiny preset a few
steps, then each rank saves its own weights for the test to compare."""

import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from fineimagen.train.trainer import TrainConfig, train

out = Path(sys.argv[1])
result = train(TrainConfig(preset="tiny", out=str(out), steps=3, batch_size=4, warmup=1,
                           checkpoint_every=100, mixed_precision="no", channels_last=False),
               progress=False)
rank = int(os.environ["RANK"])
state = {k: v.detach().contiguous() for k, v in result.module.state_dict().items()}
save_file(state, str(out / f"rank{rank}_of_{result.processes}.safetensors"))

"""scGPT cell embeddings made by the sidecar (`python -m embed_torch scgpt ...`, embed_torch/README.md).

  python launch/train.py --config=configs/scgpt.py
Reads <data root>/scgpt/scgpt_embedding.npy (+ .cells.txt); when it is missing, the error says how to
make it. Not yet measured: the pretrained scGPT weights are not obtainable here (the sidecar is tested
with a random-init model of the real architecture); compare with the :shuffled / :onehot controls.
"""

from configs import common


def get_config(arg: str | None = None):
  c = common.base_config()
  c.data.cell_repr = 'scgpt'
  return common.apply_variants(c, arg)

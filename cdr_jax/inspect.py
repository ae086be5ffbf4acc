"""A summary of a config's dataset and split (what `launch/inspect_data.py` prints)."""

import csv
import io as std_io

import ml_collections

from cdr_jax import data
from cdr_jax.data import io
from cdr_jax.data import splits


def inspect_data(config: ml_collections.ConfigDict, dump_test: str | None = None) -> dict:
  """Loads the dataset and split of `config`; returns counts; writes the test pairs if asked."""
  ds = data.load_dataset(config.data)
  split = splits.make_split(ds, config.split)
  summary = {'instances': ds.num_pairs, 'cells': len(ds.cell_ids), 'drugs': len(ds.drug_ids),
             'cancer_types': len(ds.cancer_types), 'split': split.name, **split.sizes(),
             'train_plus_val': len(split.train) + len(split.val),
             'dataset_bytes': ds.nbytes(), 'cell_feature_dim': int(ds.cell_features.shape[1]),
             **{k: v for k, v in ds.info.items() if k not in ('cell_repr',)},
             'cell_repr': config.data.cell_repr}
  if dump_test:
    write_pairs_csv(dump_test, ds, split.test)
    summary['test_csv'] = dump_test
  return summary


def write_pairs_csv(path: str, ds: data.Dataset, pairs) -> None:
  """Writes `cell_id,drug_id,ln_ic50` rows for `pairs`, in the given order, atomically."""
  buf = std_io.StringIO()
  writer = csv.writer(buf, lineterminator='\n')
  writer.writerow(['cell_id', 'drug_id', 'ln_ic50'])
  for i in pairs:
    writer.writerow([ds.cell_ids[ds.pair_cell[i]], ds.drug_ids[ds.pair_drug[i]],
                     format(float(ds.pair_y[i]), '.7g')])
  io.atomic_write_text(path, buf.getvalue())

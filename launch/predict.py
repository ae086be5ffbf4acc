"""Predictions from a trained run's best checkpoint.

  python launch/predict.py --workdir=runs/scfoundation --pairs=pairs.csv --out=pred.csv
  python launch/predict.py --workdir=runs/scfoundation --smiles="aspirin=CC(=O)Oc1ccccc1C(=O)O"
`--pairs`: a CSV with cell_id,drug_id; `--smiles`: new drugs (name=SMILES;... or a file of
name<TAB>SMILES lines), predicted against every cell line of the run.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from cdr_jax import cli
from cdr_jax import logs
from cdr_jax import predict

_WORKDIR = flags.DEFINE_string('workdir', None, 'A finished training run.')
_PAIRS = flags.DEFINE_string('pairs', None, 'CSV of cell_id,drug_id pairs to predict.')
_SMILES = flags.DEFINE_string('smiles', None, 'New drugs: name=SMILES;... or a name<TAB>SMILES file.')
_ANNOTATIONS = flags.DEFINE_string(
    'annotations', None, 'GDSC annotations of the new drugs, for runs whose data.drug_repr has '
    'annotations: name=PATHWAY|TARGET1,TARGET2;... Without them a prediction uses structure only.')
_OUT = flags.DEFINE_string('out', None, 'Output CSV (default: <workdir>/predict.csv).')


def main(argv):
  del argv
  logs.quiet_libraries()
  pairs = predict.read_pairs(_PAIRS.value) if _PAIRS.value else []
  smiles = predict.read_smiles_arg(_SMILES.value) if _SMILES.value else None
  if not pairs and not smiles:
    raise app.UsageError('give --pairs and/or --smiles')
  annotations = predict.read_annotations_arg(_ANNOTATIONS.value) if _ANNOTATIONS.value else None
  rows = predict.predict(_WORKDIR.value, pairs, smiles, annotations)
  out = _OUT.value or str(pathlib.Path(_WORKDIR.value) / 'predict.csv')
  predict.write_predictions(out, rows)
  print(f'{len(rows)} predictions written to {out}')


if __name__ == '__main__':
  flags.mark_flag_as_required('workdir')
  app.run(cli.reporting_errors(main))

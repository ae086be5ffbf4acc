"""The data root's layout: where each file lives, relative to the root (see README.md, Data).

`deepcdr/` mirrors DeepCDR's public `data/` folder; `scfoundation/` and `scgpt/` hold cell embeddings;
`gdsc/` the GDSC mutation / copy-number event matrix. Every reader and the fetcher name files here.
"""

IC50_FILE = 'deepcdr/CCLE/GDSC_IC50.csv'
DRUG_LIST_FILE = 'deepcdr/GDSC/1.Drug_listMon Jun 24 09_00_55 2019.csv'
SMILES_FILE = 'deepcdr/223drugs_pubchem_smiles.txt'
ANNOTATION_FILE = 'deepcdr/CCLE/Cell_lines_annotations_20181226.txt'
THRESHOLD_FILE = 'deepcdr/CCLE/IC50_thred.txt'
EXPRESSION_FILE = 'deepcdr/CCLE/genomic_expression_561celllines_697genes_demap_features.csv'
METHYLATION_FILE = 'deepcdr/CCLE/genomic_methylation_561celllines_808genes_demap_features.csv'
SCFOUNDATION_CELLS_FILE = 'scfoundation/50M-0.1B-res_embedding.cells.txt'  # derived from expression
SCGPT_VOCAB_FILE = 'scgpt/vocab.json'
EVENTS_FILE = 'gdsc/genomic_features_v17.csv.gz'         # GDSC mutation / copy-number events
COSMIC_FILE = 'gdsc/cosmic_info.csv.gz'                  # GDSC line names <-> COSMIC ids
BINDING_DIR = 'binding'   # public kinase binding panels (davis/, kiba/): cdr_jax.data.binding

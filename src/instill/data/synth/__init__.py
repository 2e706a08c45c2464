"""Building blocks of `instill synth` in the data layer: Self-Instruct bootstrap prompts and
their parsing and filters (`bootstrap`), ROUGE-L with an index (`rouge`) and verifiable
constraints drawn for an instruction whose answer is not known yet (`constraints`)."""

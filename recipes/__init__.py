"""Training recipes: corpus preparation, datasets and Lightning training entry points.

    python -m recipes.prepare_data --packages all --out data/corpus   # build a captioned corpus
    python -m recipes.train codec --set data.manifest=data/corpus/manifest.jsonl
"""

"""Generation backends per modality (no Dagster import): text, speech, lipsync."""

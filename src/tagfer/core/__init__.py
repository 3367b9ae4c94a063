"""The bottom layer: facts every other package shares and nothing here imports from above.

Expression classes, the AU vocabulary and priors, face regions and box geometry, AU evidence and face
records, the trace grammar (render/parse/citations, phrases, the task prompt), box conventions, the
run configuration schema, atomic files, crop geometry, run locks, logging and box drawing.
"""

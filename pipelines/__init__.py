"""The longrl Kubeflow pipeline and its command line (compile, run locally, upload, submit, schedule)."""

"""
houweb's benchmark harness: ``python -m bench`` starts houweb and reference
servers written for the same endpoints side by side, drives them with wrk and
reports every figure as a ratio to the bare design houweb is built on (a
Klein route handing each request to a 4-thread pool). See ``RESULTS.md``.
"""

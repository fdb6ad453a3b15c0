"""What every capability stands on: typed configuration, the workdir and asset paths, records, file I/O,
errors, text helpers, worker pools and the cached-stage decorator.
"""

"""Artifacts, the models and data sets deployments use: ``uris`` says which URIs zeroserve reads and
where one really is, ``object_stores`` reads AI Core's object store secrets, ``cache`` stages the
files on this machine.
"""

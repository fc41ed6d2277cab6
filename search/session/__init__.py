"""A session of a study and its trials: the study opened (`study`), the word2vec vectors and
baseline its trials share (`word2vec`, `baseline`), its trials run alone or in worker
processes (`run`, `workers`), each trial (`trial`) under the budget (`budget`, `watch`),
judged learning or not (`learning`), its ending written once (`outcome`), the disk it needs
(`diskspace`), and who watches (`progress`).

The top of search/ but for the command line: it runs what the layers below describe.
"""

"""What a run leaves behind: the fp32-vs-int8 report (``report``) and the CI gate that compares
reports (``compare``)."""

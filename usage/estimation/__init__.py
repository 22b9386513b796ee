"""Token estimates for records that arrive without usage: what an estimate is made of and the
fallback (`features`), fitting (`fitting`), the calibrated estimator (`estimator`), the caps one
call can hold (`token_limits`) and calibration from stored records (`calibration`)."""

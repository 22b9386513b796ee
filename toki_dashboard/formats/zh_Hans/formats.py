"""Number formats of the Simplified Chinese pages, over Django's own (django/conf/locale/zh_Hans).

Django's zh_Hans groups no digits (THOUSAND_SEPARATOR is empty); figures in Chinese finance
and engineering reports are grouped by thousands with a comma (1,234,567.89), as the
dashboard's money already is in every language. Dates keep Django's zh_Hans formats.
"""

THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3

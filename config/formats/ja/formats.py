"""Japanese dates of the back office: 2026年12月4日 21:30 JST, the zone always written out."""

DATE_FORMAT = "Y年n月j日"
SHORT_DATE_FORMAT = "Y/m/d"
DATETIME_FORMAT = "Y年n月j日 H:i T"
SHORT_DATETIME_FORMAT = "Y/m/d H:i T"
TIME_FORMAT = "H:i"
MONTH_DAY_FORMAT = "n月j日"
YEAR_MONTH_FORMAT = "Y年n月"
FIRST_DAY_OF_WEEK = 0
# Date filters and forms accept ISO dates and the slashes Japanese spreadsheets write.
DATE_INPUT_FORMATS = ["%Y/%m/%d", "%Y-%m-%d"]
DATETIME_INPUT_FORMATS = [
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
]

#!/usr/bin/env python3
"""Writes the generated files of the bad-input corpus (run from this directory; standard library
only). Each is small on disk; several would take gigabytes in memory if a reader trusted them.
The files are committed; this script says how they were made."""

import zipfile

CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
</Types>"""
RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>
</Relationships>"""
WORKBOOK = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">
<sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets>
</workbook>"""
WORKBOOK_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>
<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>
</Relationships>"""


def sheet(rows, prolog=""):
    body = "".join(f'<row r="{r}">{cells}</row>' for r, cells in rows)
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' + prolog +
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f"<sheetData>{body}</sheetData></worksheet>"
    )


def text(ref, value):
    return f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>'


def number(ref, value):
    return f'<c r="{ref}"><v>{value}</v></c>'


def letters(i):
    """0-based column index to letters."""
    out = ""
    i += 1
    while i:
        i, rem = divmod(i - 1, 26)
        out = chr(65 + rem) + out
    return out


def workbook(name, sheet_xml, shared_strings=None):
    with zipfile.ZipFile(name, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES)
        z.writestr("_rels/.rels", RELS)
        z.writestr("xl/workbook.xml", WORKBOOK)
        z.writestr("xl/_rels/workbook.xml.rels", WORKBOOK_RELS)
        if shared_strings is not None:
            z.writestr("xl/sharedStrings.xml", shared_strings)
        z.writestr("xl/worksheets/sheet1.xml", sheet_xml)


HEADER = (1, text("A1", "id") + text("B1", "navn") + text("C1", "antall"))

# The file: one cell at column ZZZZZZZ, far beyond any sheet.
workbook("xlsx_far_column.xlsx", sheet([HEADER, (2, number("A2", 1) + text("B2", "Åse") + number("ZZZZZZZ2", 7))]))
# A cell at Excel's last column (XFD, 16,384), far beyond a header of three.
workbook("xlsx_beyond_header.xlsx", sheet([HEADER, (2, number("A2", 1) + text("B2", "Åse") + number("C2", 2)),
                                           (3, number("A3", 2) + number("XFD3", 9))]))
# A header whose last name is in column 2,001.
workbook("xlsx_wide_header.xlsx", sheet([(1, text("A1", "id") + text(letters(2000) + "1", "k2001")), (2, number("A2", 1))]))
# A row number beyond Excel's last row.
workbook("xlsx_far_row.xlsx", sheet([HEADER, (2000000, number("A2000000", 1))]))
# Shared strings that declare four billion strings (calamine reserves room for as many).
workbook(
    "xlsx_declared_strings.xlsx",
    sheet([HEADER, (2, number("A2", 1) + '<c r="B2" t="s"><v>0</v></c>' + number("C2", 3))]),
    '<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'count="3" uniqueCount="4000000000"><si><t>Åse</t></si><si><t>Per</t></si><si><t>Kari</t></si></sst>',
)
# One cell of 5 MiB: a few kilobytes packed.
workbook("xlsx_long_value.xlsx", sheet([HEADER, (2, number("A2", 1) + text("B2", "x" * (5 << 20)))]))
# A document type declaration (entity expansion is how XML bombs work).
workbook("xlsx_doctype.xlsx", sheet([HEADER, (2, number("A2", 1))],
                                    prolog='<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'))

# CSV: a header of 2,001 columns.
with open("columns_csv.csv", "w", encoding="utf-8") as f:
    f.write(";".join(f"c{i}" for i in range(1, 2002)) + "\n")
    f.write(";".join(str(i) for i in range(1, 2002)) + "\n")
# CSV: 2,500 quoted column names, each with a delimiter inside.
with open("columns_quoted.csv", "w", encoding="utf-8") as f:
    f.write(";".join(f'"a;{i}"' for i in range(1, 2501)) + "\n")
    f.write(";".join("1" for _ in range(1, 2501)) + "\n")
# NDJSON: one record of 2,001 fields.
with open("columns_ndjson.ndjson", "w", encoding="utf-8") as f:
    f.write("{" + ",".join(f'"k{i:04}":{i}' for i in range(1, 2002)) + "}\n")
# JSON: three records of 700 fields each, all different: the 2,001st field is in the third.
with open("columns_json.json", "w", encoding="utf-8") as f:
    records = ["{" + ",".join(f'"k{r * 700 + i:04}":1' for i in range(1, 701)) + "}" for r in range(3)]
    f.write("[" + ",\n".join(records) + "]\n")

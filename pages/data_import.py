"""Import data: upload CSV files of NSE bars; the market-data service validates and stores them."""

import streamlit as st

from pages.common import actor, attempt, fetch, footer, services

INTERVALS = {"auto (from the times)": None, "5 minutes": "5m", "1 day": "1d"}

me = actor()
svc = services()
st.title("Import data")
st.caption(
    "CSV files of one NSE symbol each: a time column (timestamp, datetime or date; naive times "
    "are IST), open, high, low, close, volume and optionally symbol (e.g. NSE:RELIANCE). "
    "Pre-open, closing-session and holiday rows and exact duplicates are dropped and reported. "
    "Each file is all or nothing: a row that breaks a rule refuses the whole file."
)

with st.form("data_import_form"):
    uploads = st.file_uploader(
        "CSV files", type=["csv"], accept_multiple_files=True, key="data_import_files"
    )
    symbol = st.text_input(
        "Symbol (optional)",
        key="data_import_symbol",
        help="For a single file. Leave empty to take it from the symbol column or the file name.",
    )
    interval_label = st.selectbox("Interval", list(INTERVALS), key="data_import_interval")
    replace = st.checkbox(
        "Replace stored bars that differ",
        key="data_import_replace",
        help="Without it, a file whose bars differ from bars already stored (another source, "
        "unadjusted prices) is refused and nothing is imported.",
    )
    submitted = st.form_submit_button("Import", type="primary")

declared = symbol.strip() or None
if submitted and not uploads:
    st.warning("Choose at least one CSV file to import.")
elif submitted and uploads and attempt(
    lambda: svc.marketdata.check_declared_symbol(declared, [u.name for u in uploads])
):
    bar = st.progress(0.0, text="Importing ...")
    for done, upload in enumerate(uploads, start=1):
        with st.status(f"Importing {upload.name} ...", expanded=True) as status:
            report = fetch(
                lambda upload=upload: svc.marketdata.import_csv(
                    me,
                    upload.name,
                    upload.getvalue(),
                    symbol=declared,
                    interval=INTERVALS[interval_label],
                    replace=replace,
                )
            )
            if report is None:
                status.update(
                    label=f"{upload.name}: refused, nothing imported", state="error", expanded=True
                )
            else:
                lines = report.describe()
                st.write(lines[0])
                if report.new_instrument:
                    note = report.new_instrument_note()
                    st.warning(note[0].upper() + note[1:])
                if report.dropped:
                    st.dataframe(report.dropped_table(), hide_index=True)
                if report.replaced:
                    st.warning(f"Replaced {report.replaced:,} stored bar(s) of {report.symbol} "
                               "that had other values with this file's.")
                st.caption(f"{report.gaps.describe()} · {report.seconds:.1f} s")
                status.update(
                    label=f"{upload.name}: {report.rows_kept:,} bars of {report.symbol} "
                    f"{report.interval.value} imported",
                    state="complete",
                    expanded=bool(
                        report.dropped or report.gaps.missing_days or report.new_instrument
                    ),
                )
        bar.progress(done / len(uploads), text=f"{done} of {len(uploads)} file(s) done")
    st.cache_data.clear()  # pages' cached reads (charts, market) must see the new bars now

if not fetch(svc.marketdata.has_bars):
    st.info(
        "No bars are stored yet. `make run` loads the sample on first start; "
        "`python -m core.marketdata load-sample` loads it any time."
    )

footer()

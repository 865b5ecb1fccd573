"""Audit log (admins): filter, download as CSV, verify the hash chain; the worker's jobs."""

from datetime import timedelta

import streamlit as st

from core.clock import now_ist
from core.services import AuditFilter
from pages.common import actor, fetch, footer, services

me = actor()
svc = services()
st.title("Audit log")
today = now_ist().date()
with st.form("audit_filters"):
    c1, c2, c3, c4, c5 = st.columns(5)
    start = c1.date_input("From (IST)", value=today - timedelta(days=30), key="audit_start")
    end = c2.date_input("To (IST)", value=today, key="audit_end")
    action = c3.text_input("Action starts with", key="audit_action")
    username = c4.text_input("User", key="audit_user")
    outcome = c5.selectbox("Outcome", ["", "ok", "denied", "failed"], key="audit_outcome")
    st.form_submit_button("Filter")
entries = fetch(
    lambda: svc.audit.entries(
        me,
        AuditFilter(start=start, end=end, action_prefix=action, username=username, outcome=outcome),
    )
)
if entries is not None:
    st.caption(f"{len(entries)} entries (newest first)")
    st.dataframe(entries, hide_index=True, key="audit_table")
    st.download_button(
        "Download CSV",
        entries.to_csv(index=False),
        "sher-audit.csv",
        "text/csv",
        key="audit_download",
    )
if st.button("Verify the hash chain", key="audit_verify"):
    result = fetch(lambda: svc.audit.verify(me))
    if result is not None:
        (st.success if result.ok else st.error)(result.describe())

st.header("Jobs", anchor="jobs")
status = svc.worker.status()
if not status.is_up:
    st.warning(f"{status.describe().capitalize()}: no job runs until it is started with "
               "`python -m jobs.worker`; the times below are from its last run.")
jobs = fetch(lambda: svc.jobs.jobs(me))
if jobs is not None:
    if jobs.empty:
        st.info("No job has run yet: the worker records each job when it first runs.")
    else:
        st.caption("Fast jobs (every second) are written at most every 30 s unless their "
                   "outcome changes.")
        st.dataframe(jobs, hide_index=True, key="audit_jobs_table")

footer()

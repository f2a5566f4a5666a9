//! WebDAV: PROPFIND requests on a calendar folder and their multistatus answers.

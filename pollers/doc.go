// Package pollers owns polling: what a resource's poller configuration means
// (ParseResource), URL placeholders, Java SimpleDateFormat dates, record
// extraction, pagination, classification, watermarks and scheduling.
package pollers

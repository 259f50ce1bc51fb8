#!/usr/bin/env bash
# Mail services for the email suites: Dovecot (IMAP + LMTP) and Postfix
# (SMTP), both on loopback only, for tests. Run as root on Debian:
#
#   eval "$(bash .ci/mail-services.sh)"
#
# It installs what is missing (apt), writes the test configuration, starts
# the daemons directly (no systemd needed) and prints, on stdout and nothing
# else, the export lines below. Progress goes to stderr. It is idempotent: a
# second run changes nothing and leaves running daemons up (it reloads them
# only when it had to rewrite their configuration). It never stops anything.
#
# Exported variables (passwords are test-only and fixed):
#
#   SWITCHBOARD_TEST_IMAP=imap://support%40test.local:support-test-pw@127.0.0.1:143
#       the agent-side mailbox the connector watches
#   SWITCHBOARD_TEST_IMAP_CUSTOMER=imap://customer%40test.local:customer-test-pw@127.0.0.1:143
#       a customer's mailbox, to see replies arrive
#   SWITCHBOARD_TEST_SMTP=smtp://127.0.0.1:25
#       Postfix; accepts mail for @test.local from loopback without auth
#
# What is set up, and why:
#
# - IMAP: Dovecot with its own config file (/etc/dovecot/switchboard-test.conf,
#   started as `dovecot -c` that file), so Debian's conf.d is not involved.
#   Plaintext on 127.0.0.1:143: ssl = no and disable_plaintext_auth = no.
#   No TLS because the suites run on loopback only and a self-signed cert
#   would only add trust plumbing to every test; TLS is covered by the Go
#   unit tests against an in-process server.
# - Users: a passwd-file (/etc/dovecot/switchboard-test.passwd) with
#   support@test.local and customer@test.local. Mail lives in
#   /var/mail/switchboard-test/<address>/Maildir, owned by the system user
#   sbmail (uid/gid 5000 when free).
# - SMTP: Postfix on 127.0.0.1:25 (inet_interfaces = loopback-only).
#   test.local is a *virtual mailbox domain* (a domain cannot be both in
#   mydestination and virtual_mailbox_domains), so mydestination is just
#   localhost; known recipients are listed in a texthash map, unknown ones
#   are refused at RCPT time. Delivery goes over LMTP to Dovecot
#   (virtual_transport = lmtp:unix:private/dovecot-lmtp), hence the extra
#   package dovecot-lmtpd. Nothing is relayed: relay and default transports
#   are error:, so mail for any other domain bounces locally. No STARTTLS
#   (smtpd_tls_security_level = none): Debian's snakeoil certificate would
#   make every Go client that upgrades by itself (net/smtp) fail to verify.
# - Logs: /var/log/dovecot-switchboard-test.log and
#   /var/log/postfix-switchboard-test.log (there is no syslog here).
set -euo pipefail

readonly SERVICE_TIMEOUT=60 # seconds to wait for a started daemon to answer

readonly DOMAIN=test.local
readonly SUPPORT_USER=support@test.local SUPPORT_PASS=support-test-pw
readonly CUSTOMER_USER=customer@test.local CUSTOMER_PASS=customer-test-pw
readonly MAIL_ROOT=/var/mail/switchboard-test
readonly MAIL_USER=sbmail MAIL_ID=5000
readonly DOVECOT_CONF=/etc/dovecot/switchboard-test.conf
readonly DOVECOT_PASSWD=/etc/dovecot/switchboard-test.passwd
readonly DOVECOT_BASE=/run/dovecot-switchboard-test
readonly DOVECOT_LOG=/var/log/dovecot-switchboard-test.log
readonly POSTFIX_MAILBOXES=/etc/postfix/switchboard-test-mailboxes
readonly POSTFIX_LOG=/var/log/postfix-switchboard-test.log

export DEBIAN_FRONTEND=noninteractive

log() { printf 'mail-services: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

wait_for() {
	local name=$1 deadline
	shift
	deadline=$(($(date +%s) + SERVICE_TIMEOUT))
	until "$@"; do
		if (($(date +%s) >= deadline)); then
			die "$name did not answer within ${SERVICE_TIMEOUT}s"
		fi
		sleep 0.5
	done
	log "$name is up"
}

# install_file DEST MODE OWNER: write stdin to DEST if it differs; returns 0
# when the file changed, 1 when it was already identical.
install_file() {
	local dest=$1 mode=$2 owner=$3 tmp
	tmp=$(mktemp)
	cat >"$tmp"
	if [[ -f "$dest" ]] && cmp -s "$tmp" "$dest"; then
		rm -f "$tmp"
		return 1
	fi
	install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$tmp" "$dest"
	rm -f "$tmp"
	log "wrote $dest"
	return 0
}

# ---------------------------------------------------------------------------
# packages

REMOVE_POLICY=0
cleanup() {
	if ((REMOVE_POLICY == 1)); then
		rm -f /usr/sbin/policy-rc.d
	fi
}
trap cleanup EXIT

ensure_packages() {
	local missing=()
	[[ -x /usr/sbin/dovecot ]] || missing+=(dovecot-imapd)
	[[ -d /usr/lib/dovecot/modules ]] && [[ -x /usr/lib/dovecot/lmtp ]] || missing+=(dovecot-lmtpd)
	[[ -x /usr/sbin/postfix ]] || missing+=(postfix)
	command -v pgrep >/dev/null 2>&1 || missing+=(procps)
	if ((${#missing[@]} == 0)); then
		log "installed: dovecot-imapd dovecot-lmtpd postfix"
		return
	fi
	log "installing: ${missing[*]}"
	# "Local only": no relay host, no outside delivery; the rest is set below.
	debconf-set-selections <<-EOF
		postfix postfix/main_mailer_type select Local only
		postfix postfix/mailname string localhost
		postfix postfix/destinations string localhost
	EOF
	# Package scripts would start the daemons with Debian's configuration
	# (Dovecot on every interface); keep them down, we start our own.
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		REMOVE_POLICY=1
	fi
	apt-get update >&2
	apt-get install -y --no-install-recommends dovecot-imapd dovecot-lmtpd postfix procps >&2
	cleanup
	REMOVE_POLICY=0
}

# ---------------------------------------------------------------------------
# mail owner and maildirs

ensure_mail_user() {
	if ! getent group "$MAIL_USER" >/dev/null; then
		if getent group "$MAIL_ID" >/dev/null; then
			groupadd --system "$MAIL_USER"
		else
			groupadd --system --gid "$MAIL_ID" "$MAIL_USER"
		fi
	fi
	if ! getent passwd "$MAIL_USER" >/dev/null; then
		local uid_opt=()
		getent passwd "$MAIL_ID" >/dev/null || uid_opt=(--uid "$MAIL_ID")
		useradd --system "${uid_opt[@]}" --gid "$MAIL_USER" --home-dir "$MAIL_ROOT" \
			--no-create-home --shell /usr/sbin/nologin "$MAIL_USER"
	fi
	install -d -m 0750 -o "$MAIL_USER" -g "$MAIL_USER" "$MAIL_ROOT"
}

# ---------------------------------------------------------------------------
# Dovecot

DOVECOT_CHANGED=0

write_dovecot_conf() {
	local uid gid
	uid=$(id -u "$MAIL_USER")
	gid=$(id -g "$MAIL_USER")
	if install_file "$DOVECOT_PASSWD" 0640 root:dovecot <<-EOF; then DOVECOT_CHANGED=1; fi
		${SUPPORT_USER}:{PLAIN}${SUPPORT_PASS}::::::
		${CUSTOMER_USER}:{PLAIN}${CUSTOMER_PASS}::::::
	EOF
	if install_file "$DOVECOT_CONF" 0644 root:root <<-EOF; then DOVECOT_CHANGED=1; fi
		# Switchboard test mail server; written by .ci/mail-services.sh.
		# Loopback only, plaintext, two users from a passwd-file.
		instance_name = switchboard-test
		base_dir = ${DOVECOT_BASE}
		protocols = imap lmtp
		listen = 127.0.0.1
		log_path = ${DOVECOT_LOG}
		ssl = no
		disable_plaintext_auth = no
		auth_mechanisms = plain login
		auth_username_format = %Lu
		mail_location = maildir:${MAIL_ROOT}/%u/Maildir
		mail_uid = ${uid}
		mail_gid = ${gid}
		first_valid_uid = ${uid}
		last_valid_uid = ${uid}
		first_valid_gid = ${gid}
		last_valid_gid = ${gid}
		mail_privileged_group =
		namespace inbox {
		  inbox = yes
		  separator = /
		}
		passdb {
		  driver = passwd-file
		  args = scheme=PLAIN username_format=%Lu ${DOVECOT_PASSWD}
		}
		userdb {
		  driver = static
		  args = uid=${uid} gid=${gid} home=${MAIL_ROOT}/%Lu
		}
		service imap-login {
		  inet_listener imap {
		    address = 127.0.0.1
		    port = 143
		  }
		  inet_listener imaps {
		    port = 0
		  }
		}
		service pop3-login {
		  inet_listener pop3 {
		    port = 0
		  }
		  inet_listener pop3s {
		    port = 0
		  }
		}
		service lmtp {
		  unix_listener /var/spool/postfix/private/dovecot-lmtp {
		    mode = 0600
		    user = postfix
		    group = postfix
		  }
		}
		protocol lmtp {
		  postmaster_address = postmaster@${DOMAIN}
		}
	EOF
}

dovecot_running() { pgrep -f "^/usr/sbin/dovecot -c ${DOVECOT_CONF}\$" >/dev/null 2>&1; }

# An IMAP server greets with "* OK"; Dovecot's greeting says so.
imap_greeting() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/143 && head -n1 <&3' 2>/dev/null; }
imap_up() { [[ "$(imap_greeting)" == "* OK"*Dovecot* ]]; }

ensure_dovecot() {
	write_dovecot_conf
	/usr/bin/doveconf -c "$DOVECOT_CONF" -n >/dev/null || die "dovecot rejects $DOVECOT_CONF"
	if dovecot_running; then
		if ((DOVECOT_CHANGED == 1)); then
			log "reloading dovecot"
			/usr/bin/doveadm -c "$DOVECOT_CONF" reload
		else
			log "dovecot is running"
		fi
	else
		local greeting
		greeting=$(imap_greeting || true)
		if [[ -n "$greeting" ]]; then
			die "something else answers on 127.0.0.1:143 ($greeting); stop it first"
		fi
		log "starting dovecot"
		install -d -m 0755 "$DOVECOT_BASE"
		/usr/sbin/dovecot -c "$DOVECOT_CONF"
	fi
	wait_for "dovecot (imap on 127.0.0.1:143)" imap_up
	wait_for "dovecot lmtp socket" test -S /var/spool/postfix/private/dovecot-lmtp
}

# ---------------------------------------------------------------------------
# Postfix

POSTFIX_CHANGED=0

# set_postconf NAME=VALUE...: set main.cf parameters that differ.
set_postconf() {
	local kv name want have
	for kv in "$@"; do
		name=${kv%%=*}
		want=${kv#*=}
		have=$(postconf -h "$name" 2>/dev/null || true)
		if [[ "$have" != "$want" ]]; then
			postconf -e "$name=$want"
			POSTFIX_CHANGED=1
		fi
	done
}

write_postfix_conf() {
	if install_file "$POSTFIX_MAILBOXES" 0644 root:root <<-EOF; then POSTFIX_CHANGED=1; fi
		${SUPPORT_USER} ok
		${CUSTOMER_USER} ok
	EOF
	set_postconf \
		"compatibility_level=3.6" \
		"myhostname=mail.${DOMAIN}" \
		"mydomain=${DOMAIN}" \
		"myorigin=\$myhostname" \
		"inet_interfaces=loopback-only" \
		"inet_protocols=ipv4" \
		"mydestination=localhost" \
		"mynetworks=127.0.0.0/8" \
		"relayhost=" \
		"relay_domains=" \
		"virtual_mailbox_domains=${DOMAIN}" \
		"virtual_mailbox_maps=texthash:${POSTFIX_MAILBOXES}" \
		"virtual_transport=lmtp:unix:private/dovecot-lmtp" \
		"relay_transport=error:switchboard test server relays nothing" \
		"default_transport=error:switchboard test server relays nothing" \
		"smtpd_tls_security_level=none" \
		"smtpd_relay_restrictions=reject_unauth_destination" \
		"smtpd_recipient_restrictions=reject_unauth_destination" \
		"message_size_limit=52428800" \
		"maillog_file=${POSTFIX_LOG}"
	# Run every service outside the chroot: nothing copies resolv.conf and
	# friends into /var/spool/postfix when the init script is not used.
	local chroots
	chroots=$(postconf -F '*/*/chroot' | awk '{print $3}' | sort -u)
	if [[ "$chroots" != "n" ]]; then
		postconf -F '*/*/chroot=n'
		POSTFIX_CHANGED=1
	fi
	# maillog_file needs the postlog service (it exists in Debian 12's
	# master.cf, but keep older files working).
	if ! postconf -M postlog/unix-dgram >/dev/null 2>&1 || [[ -z "$(postconf -M postlog/unix-dgram)" ]]; then
		postconf -M 'postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd'
		POSTFIX_CHANGED=1
	fi
	if [[ ! -f /etc/aliases ]]; then
		printf 'postmaster: root\n' >/etc/aliases
	fi
	if [[ ! -f /etc/aliases.db || /etc/aliases -nt /etc/aliases.db ]]; then
		newaliases
	fi
	postfix check
}

postfix_running() { postfix status >/dev/null 2>&1; }
smtp_greeting() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/25 && head -n1 <&3' 2>/dev/null; }
smtp_up() { [[ "$(smtp_greeting)" == 220* ]]; }

ensure_postfix() {
	write_postfix_conf
	if postfix_running; then
		if ((POSTFIX_CHANGED == 1)); then
			log "reloading postfix"
			postfix reload 2>&1 | sed 's/^/postfix: /' >&2
		else
			log "postfix is running"
		fi
	else
		local greeting
		greeting=$(smtp_greeting || true)
		if [[ -n "$greeting" ]]; then
			die "something else answers on 127.0.0.1:25 ($greeting); stop it first"
		fi
		log "starting postfix"
		postfix start 2>&1 | sed 's/^/postfix: /' >&2
	fi
	wait_for "postfix (smtp on 127.0.0.1:25)" smtp_up
}

# ---------------------------------------------------------------------------

print_env() {
	local su cu
	su=${SUPPORT_USER/@/%40}
	cu=${CUSTOMER_USER/@/%40}
	printf "export SWITCHBOARD_TEST_IMAP='imap://%s:%s@127.0.0.1:143'\n" "$su" "$SUPPORT_PASS"
	printf "export SWITCHBOARD_TEST_IMAP_CUSTOMER='imap://%s:%s@127.0.0.1:143'\n" "$cu" "$CUSTOMER_PASS"
	printf "export SWITCHBOARD_TEST_SMTP='smtp://127.0.0.1:25'\n"
}

main() {
	((EUID == 0)) || die "run as root (it installs and starts services)"
	ensure_packages
	ensure_mail_user
	ensure_dovecot
	ensure_postfix
	print_env
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	main "$@"
fi

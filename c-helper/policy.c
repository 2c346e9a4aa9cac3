/*
 * /etc/hutch/policy: which non-root users may use a setuid hutch-cgroup,
 * and the ceilings of the limits they may set.
 *
 * One rule per line; `#` starts a comment; words are separated by spaces
 * or tabs:
 *
 *   user NAME|UID   memory=BYTES|max pids=N|max cpus=N[.NNN]|max containers=N|max
 *   group NAME|GID  (the same keys)
 *
 * memory-swap=BYTES|max may follow, as a ceiling of memory plus swap.
 * The first user line for the caller's real uid wins; without one, the
 * first group line whose gid is the caller's real gid or one of its
 * supplementary groups. A caller that no line matches is refused. Names
 * are looked up in /etc/passwd and /etc/group directly (no NSS in a setuid
 * program), so a user that only a directory service knows needs its
 * number. Any syntax error, and any name that is not found, refuses every
 * setuid request, so a typo never passes unnoticed.
 */
#define _GNU_SOURCE
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define POLICY_MAX_BYTES 65536
#define POLICY_LINE_MAX 1024
#define POLICY_WORDS_MAX 16
#define POLICY_GROUPS_MAX 65536
#define MEMORY_MIN (4ULL << 20)
#define MEMORY_MAX (1ULL << 62)
#define CPUS_MILLI_MIN 10ULL
#define CPUS_MILLI_MAX 4096000ULL
#define CPU_PERIOD_DEFAULT 100000ULL
#define CPU_QUOTA_MIN 1000ULL
#define CPU_QUOTA_MAX 1000000000ULL

/* Reject a policy file or directory that a user other than root could change. */
static int check_secure(int fd, const char *path, mode_t type, struct hutch_error *err)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return err_sys(err, errno, "fstat", path);
	if ((st.st_mode & S_IFMT) != type)
		return err_msg(err, "policy `%s`: not a %s", path,
			       type == S_IFDIR ? "directory" : "regular file");
	if (st.st_uid != 0)
		return err_msg(err, "policy `%s`: owned by uid %u, expected root", path,
			       (unsigned)st.st_uid);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return err_msg(err, "policy `%s`: writable by group or others (mode %04o); "
			       "expected 0644 or stricter", path, (unsigned)(st.st_mode & 07777));
	return 0;
}

static int open_checked(int dirfd, const char *name, const char *path, int flags, mode_t type,
			struct hutch_error *err)
{
	int fd = openat(dirfd, name, flags | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		int saved = errno;

		if (saved == ENOENT)
			return err_msg(err, "policy `%s`: missing; setuid use needs a policy written by "
				       "an administrator", path);
		if (saved == ELOOP || saved == ENOTDIR)
			return err_msg(err, "policy `%s`: a symlink or of the wrong type; expected a "
				       "plain %s", path, type == S_IFDIR ? "directory" : "file");
		return err_sys(err, saved, "open", path);
	}
	if (check_secure(fd, path, type, err) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Read the whole policy into BUF (NUL-terminated); the file must be smaller than LEN. */
static int read_policy(int fd, char *buf, size_t len, struct hutch_error *err)
{
	size_t used = 0;

	for (;;) {
		ssize_t n = read_retry(fd, buf + used, len - used);

		if (n < 0)
			return err_sys(err, errno, "read", POLICY_PATH);
		if (n == 0)
			break;
		used += (size_t)n;
		if (used == len)
			return err_msg(err, "policy `%s`: larger than %d bytes", POLICY_PATH,
				       POLICY_MAX_BYTES);
	}
	if (memchr(buf, '\0', used) != NULL)
		return err_msg(err, "policy `%s`: contains a NUL byte", POLICY_PATH);
	buf[used] = '\0';
	return 0;
}

int policy_load(const struct caller *caller, struct policy_rule *rule, struct hutch_error *err)
{
	cleanup_fd int dir = -1;
	cleanup_fd int file = -1;
	cleanup_free char *text = NULL;
	cleanup_free gid_t *groups = NULL;
	int group_count;

	dir = open_checked(AT_FDCWD, POLICY_DIR, POLICY_DIR, O_DIRECTORY, S_IFDIR, err);
	if (dir < 0)
		return -1;
	file = open_checked(dir, "policy", POLICY_PATH, O_NONBLOCK, S_IFREG, err);
	if (file < 0)
		return -1;
	text = malloc(POLICY_MAX_BYTES + 1);
	if (text == NULL)
		return err_sys(err, errno, "malloc", NULL);
	if (read_policy(file, text, POLICY_MAX_BYTES + 1, err) < 0)
		return -1;

	group_count = getgroups(0, NULL);
	if (group_count < 0 || group_count > POLICY_GROUPS_MAX)
		return err_sys(err, errno, "getgroups", NULL);
	groups = calloc((size_t)group_count + 1, sizeof(*groups));
	if (groups == NULL)
		return err_sys(err, errno, "calloc", NULL);
	group_count = getgroups(group_count, groups);
	if (group_count < 0)
		return err_sys(err, errno, "getgroups", NULL);
	return policy_parse(text, caller, groups, (size_t)group_count, rule, err);
}

/* --- names --- */

static bool is_number(const char *word)
{
	return word[0] != '\0' && strspn(word, "0123456789") == strlen(word);
}

static bool is_valid_name(const char *word)
{
	size_t len = strlen(word);

	return len > 0 && len <= 32 && word[0] != '-' &&
	       strspn(word, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
		       len;
}

/* Find NAME in the passwd or group file FILE; *ID is its third field. Returns 1, 0 or -1. */
static int lookup_name(const char *file, const char *name, uint32_t *id)
{
	FILE *stream = fopen(file, "re");
	char *line = NULL;
	size_t cap = 0;
	size_t name_len = strlen(name);
	int found = 0;

	if (stream == NULL)
		return -1;
	while (found == 0 && getline(&line, &cap, stream) > 0) {
		char *field;
		uint64_t value;

		if (strncmp(line, name, name_len) != 0 || line[name_len] != ':')
			continue;
		/* NAME:PASSWORD:ID:... */
		field = strchr(line + name_len + 1, ':');
		if (field == NULL)
			continue;
		field++;
		field[strcspn(field, ":")] = '\0';
		if (parse_u64(field, UINT32_MAX - 1, &value) == 0) {
			*id = (uint32_t)value;
			found = 1;
		}
	}
	free(line);
	fclose(stream);
	return found;
}

/* Resolve the second word of a rule: a number, or a name in /etc/passwd or /etc/group. */
static int resolve_who(bool is_user, const char *word, unsigned line_no, uint32_t *id,
		       struct hutch_error *err)
{
	const char *file = is_user ? "/etc/passwd" : "/etc/group";
	uint64_t value;
	int found;

	if (is_number(word)) {
		if (parse_u64(word, UINT32_MAX - 1, &value) < 0)
			return err_msg(err, "policy `%s` line %u: invalid id `%s`", POLICY_PATH, line_no,
				       word);
		*id = (uint32_t)value;
		return 0;
	}
	if (!is_valid_name(word))
		return err_msg(err, "policy `%s` line %u: invalid %s name `%s`", POLICY_PATH, line_no,
			       is_user ? "user" : "group", word);
	found = lookup_name(file, word, id);
	if (found < 0)
		return err_sys(err, errno, "open", file);
	if (found == 0)
		return err_msg(err, "policy `%s` line %u: %s `%s` not found in %s", POLICY_PATH,
			       line_no, is_user ? "user" : "group", word, file);
	return 0;
}

/* --- values --- */

/* N or N.F with one to three fraction digits, in thousandths. */
static int parse_cpus(const char *text, uint64_t *milli)
{
	char whole[16];
	const char *dot = strchr(text, '.');
	size_t whole_len = dot != NULL ? (size_t)(dot - text) : strlen(text);
	uint64_t units, fraction = 0;

	if (whole_len == 0 || whole_len >= sizeof(whole))
		return -1;
	memcpy(whole, text, whole_len);
	whole[whole_len] = '\0';
	if (parse_u64(whole, CPUS_MILLI_MAX / 1000, &units) < 0)
		return -1;
	if (dot != NULL) {
		size_t digits = strlen(dot + 1);

		if (digits == 0 || digits > 3 || strspn(dot + 1, "0123456789") != digits)
			return -1;
		for (size_t i = 0; i < 3; i++)
			fraction = fraction * 10 + (i < digits ? (uint64_t)(dot[1 + i] - '0') : 0);
	}
	*milli = units * 1000 + fraction;
	return 0;
}

enum policy_key { KEY_MEMORY, KEY_MEMORY_SWAP, KEY_PIDS, KEY_CPUS, KEY_CONTAINERS, KEY_COUNT };

static const char *const key_names[KEY_COUNT] = { "memory", "memory-swap", "pids", "cpus",
						  "containers" };

/* Parse VALUE of KEY into *OUT; "max" is POLICY_NO_CEILING. Returns 0 or -1. */
static int parse_value(enum policy_key key, const char *value, uint64_t *out)
{
	if (strcmp(value, "max") == 0) {
		*out = POLICY_NO_CEILING;
		return 0;
	}
	switch (key) {
	case KEY_MEMORY:
	case KEY_MEMORY_SWAP:
		return parse_size(value, out) < 0 || *out < MEMORY_MIN || *out > MEMORY_MAX ? -1 : 0;
	case KEY_PIDS:
		return parse_u64(value, 4194304, out) < 0 || *out == 0 ? -1 : 0;
	case KEY_CPUS:
		return parse_cpus(value, out) < 0 || *out < CPUS_MILLI_MIN || *out > CPUS_MILLI_MAX
			       ? -1
			       : 0;
	case KEY_CONTAINERS:
		return parse_u64(value, 65536, out) < 0 || *out == 0 ? -1 : 0;
	case KEY_COUNT:
	default:
		return -1;
	}
}

static const char *const value_forms[KEY_COUNT] = {
	"4m to 2^62 bytes (k, m, g suffixes) or max",
	"4m to 2^62 bytes (k, m, g suffixes) or max",
	"1 to 4194304 or max",
	"0.01 to 4096 (up to three decimals) or max",
	"1 to 65536 or max",
};

/* Parse the KEY=VALUE words of one rule into RULE. */
static int parse_settings(char **words, size_t count, unsigned line_no, struct policy_rule *rule,
			  struct hutch_error *err)
{
	bool seen[KEY_COUNT] = { false };
	uint64_t values[KEY_COUNT] = { 0 };

	for (size_t i = 0; i < count; i++) {
		char *value = strchr(words[i], '=');
		int key = -1;

		if (value != NULL)
			*value++ = '\0';
		for (int k = 0; k < KEY_COUNT; k++) {
			if (strcmp(words[i], key_names[k]) == 0)
				key = k;
		}
		if (key < 0 || value == NULL)
			return err_msg(err, "policy `%s` line %u: unknown setting `%s`; expected "
				       "memory=, memory-swap=, pids=, cpus= or containers=",
				       POLICY_PATH, line_no, words[i]);
		if (seen[key])
			return err_msg(err, "policy `%s` line %u: `%s` given twice", POLICY_PATH,
				       line_no, key_names[key]);
		if (parse_value((enum policy_key)key, value, &values[key]) < 0)
			return err_msg(err, "policy `%s` line %u: invalid %s `%s`: expected %s",
				       POLICY_PATH, line_no, key_names[key], value, value_forms[key]);
		seen[key] = true;
	}
	for (int k = 0; k < KEY_COUNT; k++) {
		if (!seen[k] && k != KEY_MEMORY_SWAP)
			return err_msg(err, "policy `%s` line %u: missing %s= (write %s=max for no "
				       "ceiling)", POLICY_PATH, line_no, key_names[k], key_names[k]);
	}
	if (seen[KEY_MEMORY_SWAP] && values[KEY_MEMORY_SWAP] != POLICY_NO_CEILING &&
	    (values[KEY_MEMORY] == POLICY_NO_CEILING ||
	     values[KEY_MEMORY_SWAP] < values[KEY_MEMORY]))
		return err_msg(err, "policy `%s` line %u: memory-swap must be at least memory, and "
			       "memory must not be max", POLICY_PATH, line_no);
	*rule = (struct policy_rule){
		.matched = true,
		.line = line_no,
		.memory = values[KEY_MEMORY],
		.memory_swap = values[KEY_MEMORY_SWAP],
		.pids = values[KEY_PIDS],
		.cpus_milli = values[KEY_CPUS],
		.containers = values[KEY_CONTAINERS],
	};
	return 0;
}

/* Split LINE at spaces and tabs, in place, after cutting off a comment. */
static size_t split_words(char *line, char **words, size_t max, bool *overflow)
{
	size_t count = 0;
	char *save = NULL;

	line[strcspn(line, "#")] = '\0';
	*overflow = false;
	for (char *word = strtok_r(line, " \t\r", &save); word != NULL;
	     word = strtok_r(NULL, " \t\r", &save)) {
		if (count == max) {
			*overflow = true;
			break;
		}
		words[count++] = word;
	}
	return count;
}

static bool in_groups(uint32_t gid, const struct caller *caller, const gid_t *groups,
		      size_t group_count)
{
	if (gid == caller->gid)
		return true;
	for (size_t i = 0; i < group_count; i++) {
		if (groups[i] == gid)
			return true;
	}
	return false;
}

/* Parse one non-empty line; sets *MATCHED_USER or *MATCHED_GROUP when it is the caller's. */
static int parse_line(char *line, unsigned line_no, const struct caller *caller,
		      const gid_t *groups, size_t group_count, struct policy_rule *user_rule,
		      struct policy_rule *group_rule, struct hutch_error *err)
{
	char *words[POLICY_WORDS_MAX];
	bool overflow;
	size_t count = split_words(line, words, POLICY_WORDS_MAX, &overflow);
	struct policy_rule rule = { .matched = false };
	bool is_user;
	uint32_t id = 0;

	if (count == 0)
		return 0;
	if (overflow)
		return err_msg(err, "policy `%s` line %u: more than %d words", POLICY_PATH, line_no,
			       POLICY_WORDS_MAX);
	if (strcmp(words[0], "user") != 0 && strcmp(words[0], "group") != 0)
		return err_msg(err, "policy `%s` line %u: expected `user` or `group`, not `%s`",
			       POLICY_PATH, line_no, words[0]);
	is_user = words[0][0] == 'u';
	if (count < 2)
		return err_msg(err, "policy `%s` line %u: missing the %s name or id", POLICY_PATH,
			       line_no, words[0]);
	if (resolve_who(is_user, words[1], line_no, &id, err) < 0 ||
	    parse_settings(words + 2, count - 2, line_no, &rule, err) < 0)
		return -1;
	if (is_user && id == caller->uid && !user_rule->matched)
		*user_rule = rule;
	if (!is_user && !group_rule->matched && in_groups(id, caller, groups, group_count))
		*group_rule = rule;
	return 0;
}

int policy_parse(const char *text, const struct caller *caller, const gid_t *groups,
		 size_t group_count, struct policy_rule *rule, struct hutch_error *err)
{
	struct policy_rule user_rule = { .matched = false };
	struct policy_rule group_rule = { .matched = false };
	char line[POLICY_LINE_MAX + 1];
	unsigned line_no = 0;

	while (*text != '\0') {
		size_t len = strcspn(text, "\n");

		line_no++;
		if (len > POLICY_LINE_MAX)
			return err_msg(err, "policy `%s` line %u: longer than %d bytes", POLICY_PATH,
				       line_no, POLICY_LINE_MAX);
		memcpy(line, text, len);
		line[len] = '\0';
		if (parse_line(line, line_no, caller, groups, group_count, &user_rule, &group_rule,
			       err) < 0)
			return -1;
		text += len;
		if (*text == '\n')
			text++;
	}
	*rule = user_rule.matched ? user_rule : group_rule;
	return 0;
}

/* --- ceilings --- */

/* A limit the request left out gets the ceiling; one above it is an error, never lowered. */
static int apply_ceiling(const char *opt, uint64_t *value, uint64_t ceiling,
			 const struct policy_rule *rule, struct hutch_error *err)
{
	if (ceiling == POLICY_NO_CEILING)
		return 0;
	if (*value == 0) {
		*value = ceiling;
		return 0;
	}
	if (*value > ceiling)
		return err_msg(err, "%s %" PRIu64 " is above the ceiling of %" PRIu64 " in `%s` "
			       "line %u", opt, *value, ceiling, POLICY_PATH, rule->line);
	return 0;
}

/* cpus=N limits quota/period to N; a request without a quota gets N CPUs. */
static int apply_cpus(const struct policy_rule *rule, struct cgroup_limits *l,
		      struct hutch_error *err)
{
	uint64_t period = l->cpu_period != 0 ? l->cpu_period : CPU_PERIOD_DEFAULT;
	uint64_t max_quota = rule->cpus_milli * period / 1000;

	if (rule->cpus_milli == POLICY_NO_CEILING)
		return 0;
	if (l->cpu_quota == 0) {
		if (max_quota < CPU_QUOTA_MIN)
			return err_msg(err, "--cpu-period %" PRIu64 " is too short for the cpus ceiling "
				       "in `%s` line %u: the quota would be below 1000 us", period,
				       POLICY_PATH, rule->line);
		l->cpu_quota = max_quota < CPU_QUOTA_MAX ? max_quota : CPU_QUOTA_MAX;
		/* Written explicitly, so that a v1 cgroup does not keep another period. */
		l->cpu_period = period;
		return 0;
	}
	if (l->cpu_quota > max_quota)
		return err_msg(err, "--cpu-quota %" PRIu64 " per --cpu-period %" PRIu64 " is above "
			       "the ceiling of %" PRIu64 ".%03" PRIu64 " CPUs in `%s` line %u",
			       l->cpu_quota, period, rule->cpus_milli / 1000, rule->cpus_milli % 1000,
			       POLICY_PATH, rule->line);
	return 0;
}

int policy_apply(const struct policy_rule *rule, struct cgroup_limits *l, struct hutch_error *err)
{
	if (apply_ceiling("--memory", &l->memory, rule->memory, rule, err) < 0)
		return -1;
	if (rule->memory_swap != 0 &&
	    apply_ceiling("--memory-swap", &l->memory_swap, rule->memory_swap, rule, err) < 0)
		return -1;
	if (apply_ceiling("--pids", &l->pids, rule->pids, rule, err) < 0)
		return -1;
	return apply_cpus(rule, l, err);
}

package sieve

// The grammar of each command and test: which tags it takes, which
// positional arguments, whether it takes tests or a block, and which
// extension it belongs to. The checker validates the syntax tree against
// these tables.

type argType int

const (
	atNone    argType = iota // a tag without a value
	atString                 // one string (not a list)
	atStrings                // a string list (a single string is a list of one)
	atNumber
)

func (t argType) String() string {
	switch t {
	case atString:
		return "string"
	case atStrings:
		return "string list"
	case atNumber:
		return "number"
	}
	return "nothing"
}

type tagDef struct {
	ext   string  // the extension that must be required, "" for the base
	group string  // at most one tag of a group per command
	val   argType // the value that follows the tag
}

// Tag groups that several commands share.
var (
	matchTags = map[string]tagDef{
		"is":       {group: "match"},
		"contains": {group: "match"},
		"matches":  {group: "match"},
		"regex":    {ext: "regex", group: "match"},
		"count":    {ext: "relational", group: "match", val: atString},
		"value":    {ext: "relational", group: "match", val: atString},
	}
	comparatorTags = map[string]tagDef{
		"comparator": {group: "comparator", val: atString},
	}
	addressPartTags = map[string]tagDef{
		"all":       {group: "addrpart"},
		"localpart": {group: "addrpart"},
		"domain":    {group: "addrpart"},
		"user":      {ext: "subaddress", group: "addrpart"},
		"detail":    {ext: "subaddress", group: "addrpart"},
	}
	indexTags = map[string]tagDef{
		"index": {ext: "index", val: atNumber},
		"last":  {ext: "index"},
	}
	zoneTags = map[string]tagDef{
		"zone":         {group: "zone", val: atString},
		"originalzone": {group: "zone"},
	}
	mimeTags = map[string]tagDef{
		"mime":     {ext: "mime"},
		"anychild": {ext: "mime"},
	}
	mimeOptTags = map[string]tagDef{
		"type":        {ext: "mime", group: "mimeopt"},
		"subtype":     {ext: "mime", group: "mimeopt"},
		"contenttype": {ext: "mime", group: "mimeopt"},
		"param":       {ext: "mime", group: "mimeopt", val: atStrings},
	}
	flagsTag = map[string]tagDef{
		"flags": {ext: "imap4flags", val: atStrings},
	}
	copyTag = map[string]tagDef{
		"copy": {ext: "copy"},
	}
	createTag = map[string]tagDef{
		"create": {ext: "mailbox"},
	}
	setModifierTags = map[string]tagDef{
		"lower":         {},
		"upper":         {},
		"lowerfirst":    {},
		"upperfirst":    {},
		"quotewildcard": {},
		"quoteregex":    {ext: "regex"},
		"encodeurl":     {ext: "enotify"},
		"length":        {},
	}
)

type cmdDef struct {
	ext     string
	test    bool                  // a test, not a command
	tags    []map[string]tagDef   // the tag sets it accepts
	args    []argType             // positional arguments
	opt     int                   // how many leading positional arguments may be absent
	optTail int                   // how many trailing positional arguments may be absent
	tests   int                   // 0 none, 1 exactly one test, -1 a test list
	block   bool                  // takes a block
	extra   func(*checker, *node) // command-specific checks
}

func merge(ms ...map[string]tagDef) []map[string]tagDef { return ms }

var (
	stdMatch = merge(matchTags, comparatorTags)
)

// commands and tests, by lowercase name.
var commandDefs map[string]*cmdDef
var testDefs map[string]*cmdDef

func init() {
	commandDefs = map[string]*cmdDef{
		"require": {args: []argType{atStrings}},
		"if":      {tests: 1, block: true},
		"elsif":   {tests: 1, block: true},
		"else":    {block: true},
		"stop":    {},
		"keep":    {tags: merge(flagsTag)},
		"discard": {},
		"redirect": {tags: merge(copyTag), args: []argType{atString},
			extra: checkRedirect},
		"fileinto": {ext: "fileinto", tags: merge(copyTag, flagsTag, createTag, map[string]tagDef{"specialuse": {ext: "special-use", val: atString}}),
			args: []argType{atString}, extra: checkFileinto},
		"reject":  {ext: "reject", args: []argType{atString}},
		"ereject": {ext: "ereject", args: []argType{atString}},
		"setflag": {ext: "imap4flags", args: []argType{atString, atStrings}, opt: 1,
			extra: checkFlagVar},
		"addflag": {ext: "imap4flags", args: []argType{atString, atStrings}, opt: 1,
			extra: checkFlagVar},
		"removeflag": {ext: "imap4flags", args: []argType{atString, atStrings}, opt: 1,
			extra: checkFlagVar},
		"set": {ext: "variables", tags: merge(setModifierTags), args: []argType{atString, atString},
			extra: checkSet},
		"vacation": {ext: "vacation", tags: merge(map[string]tagDef{
			"days":      {group: "period", val: atNumber},
			"seconds":   {ext: "vacation-seconds", group: "period", val: atNumber},
			"subject":   {val: atString},
			"from":      {val: atString},
			"addresses": {val: atStrings},
			"mime":      {},
			"handle":    {val: atString},
		}), args: []argType{atString}, extra: checkVacation},
		"include": {ext: "include", tags: merge(map[string]tagDef{
			"personal": {group: "location"},
			"global":   {group: "location"},
			"once":     {},
			"optional": {},
		}), args: []argType{atString}, extra: checkInclude},
		"return": {ext: "include"},
		"global": {ext: "include", args: []argType{atStrings}, extra: checkGlobal},
		"addheader": {ext: "editheader", tags: merge(map[string]tagDef{"last": {}}),
			args: []argType{atString, atString}, extra: checkAddheader},
		"deleteheader": {ext: "editheader", tags: merge(map[string]tagDef{
			"index": {val: atNumber},
			"last":  {},
		}, matchTags, comparatorTags), args: []argType{atString, atStrings}, optTail: 1,
			extra: checkDeleteheader},
		"error":        {ext: "ihave", args: []argType{atString}},
		"foreverypart": {ext: "foreverypart", tags: merge(map[string]tagDef{"name": {val: atString}}), block: true},
		"break":        {ext: "foreverypart", tags: merge(map[string]tagDef{"name": {val: atString}}), extra: checkBreak},
		"extracttext": {ext: "extracttext", tags: merge(setModifierTags, map[string]tagDef{"first": {val: atNumber}}),
			args: []argType{atString}, extra: checkExtracttext},
		"notify": {ext: "enotify", tags: merge(map[string]tagDef{
			"from":       {val: atString},
			"importance": {val: atString},
			"options":    {val: atStrings},
			"message":    {val: atString},
		}), args: []argType{atString}, extra: checkNotify},
	}
	testDefs = map[string]*cmdDef{
		"true":    {test: true},
		"false":   {test: true},
		"not":     {test: true, tests: 1},
		"allof":   {test: true, tests: -1},
		"anyof":   {test: true, tests: -1},
		"exists":  {test: true, tags: merge(mimeTags), args: []argType{atStrings}, extra: checkMimeTags},
		"size":    {test: true, tags: merge(map[string]tagDef{"over": {group: "size"}, "under": {group: "size"}}), args: []argType{atNumber}, extra: checkSize},
		"header":  {test: true, tags: merge(matchTags, comparatorTags, indexTags, mimeTags, mimeOptTags), args: []argType{atStrings, atStrings}, extra: checkMimeTags},
		"address": {test: true, tags: merge(matchTags, comparatorTags, addressPartTags, indexTags, mimeTags), args: []argType{atStrings, atStrings}, extra: checkAddressHeaders},
		"envelope": {test: true, ext: "envelope", tags: merge(matchTags, comparatorTags, addressPartTags),
			args: []argType{atStrings, atStrings}, extra: checkEnvelope},
		"string": {test: true, ext: "variables", tags: stdMatch, args: []argType{atStrings, atStrings}},
		"hasflag": {test: true, ext: "imap4flags", tags: stdMatch, args: []argType{atStrings, atStrings}, opt: 1,
			extra: checkHasflag},
		"body": {test: true, ext: "body", tags: merge(matchTags, comparatorTags, map[string]tagDef{
			"raw":     {group: "transform"},
			"content": {group: "transform", val: atStrings},
			"text":    {group: "transform"},
		}), args: []argType{atStrings}},
		"date": {test: true, ext: "date", tags: merge(matchTags, comparatorTags, zoneTags, indexTags),
			args: []argType{atString, atString, atStrings}, extra: checkDate},
		"currentdate": {test: true, ext: "date", tags: merge(matchTags, comparatorTags, map[string]tagDef{"zone": {val: atString}}),
			args: []argType{atString, atStrings}, extra: checkDate},
		"mailboxexists":        {test: true, ext: "mailbox", args: []argType{atStrings}},
		"metadata":             {test: true, ext: "mboxmetadata", tags: stdMatch, args: []argType{atString, atString, atStrings}},
		"metadataexists":       {test: true, ext: "mboxmetadata", args: []argType{atString, atStrings}},
		"servermetadata":       {test: true, ext: "servermetadata", tags: stdMatch, args: []argType{atString, atStrings}},
		"servermetadataexists": {test: true, ext: "servermetadata", args: []argType{atStrings}},
		"specialuse_exists": {test: true, ext: "special-use", args: []argType{atString, atStrings}, opt: 1,
			extra: checkSpecialUse},
		"environment": {test: true, ext: "environment", tags: stdMatch, args: []argType{atString, atStrings}},
		"duplicate": {test: true, ext: "duplicate", tags: merge(map[string]tagDef{
			"handle":   {val: atString},
			"header":   {group: "id", val: atString},
			"uniqueid": {group: "id", val: atString},
			"seconds":  {val: atNumber},
			"last":     {},
		})},
		"ihave":               {test: true, ext: "ihave", args: []argType{atStrings}},
		"spamtest":            {test: true, ext: "spamtest", tags: merge(matchTags, comparatorTags, map[string]tagDef{"percent": {ext: "spamtestplus"}}), args: []argType{atString}},
		"virustest":           {test: true, ext: "virustest", tags: stdMatch, args: []argType{atString}},
		"valid_notify_method": {test: true, ext: "enotify", args: []argType{atStrings}},
		"notify_method_capability": {test: true, ext: "enotify", tags: stdMatch,
			args: []argType{atString, atString, atStrings}},
	}
}

// knownExtensions are the capability strings require and ihave accept.
var knownExtensions = map[string]bool{
	"fileinto": true, "envelope": true, "reject": true, "ereject": true,
	"encoded-character": true, "comparator-i;octet": true,
	"comparator-i;ascii-casemap": true, "comparator-i;ascii-numeric": true,
	"imap4flags": true, "copy": true, "subaddress": true, "relational": true,
	"variables": true, "body": true, "vacation": true, "vacation-seconds": true,
	"date": true, "index": true, "mailbox": true, "include": true,
	"duplicate": true, "editheader": true, "environment": true, "regex": true,
	"ihave": true, "spamtest": true, "spamtestplus": true, "virustest": true,
	"enotify": true, "special-use": true, "mboxmetadata": true, "servermetadata": true, "mime": true, "foreverypart": true, "extracttext": true,
}

// impliedExtensions: requiring the key also makes the values available.
var impliedExtensions = map[string][]string{
	"vacation-seconds": {"vacation"},
	"spamtestplus":     {"spamtest"},
}

// Extensions returns the capability strings this package implements, for
// a ManageSieve-like listing or for sieve-test's help.
func Extensions() []string {
	out := make([]string, 0, len(knownExtensions))
	for e := range knownExtensions {
		out = append(out, e)
	}
	sortStrings(out)
	return out
}

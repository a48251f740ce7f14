package conversation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arkbot/arkbot/arkclient"
	"github.com/arkbot/arkbot/metrics"
)

// Painter makes pictures; *arkclient.Images implements it.
type Painter interface {
	Generate(ctx context.Context, req arkclient.ImageRequest) (*arkclient.ImageResult, error)
}

// ImageReply is a Reply that can post pictures into its conversation.
// The engine checks for it with a type assertion: a Reply without it
// answers /image with a notice.
type ImageReply interface {
	// SendPictures posts pics with caption (the prompt) where the answer
	// goes, and returns a reference to each posted file (a permalink, an
	// attachment URL, a path) for the conversation's memory. An error
	// with a UserMessage() string method (such as a UserError) is shown
	// to the user in those words.
	SendPictures(ctx context.Context, caption string, pics []Picture) ([]string, error)
}

// userError is an error with words for the user.
type userError interface {
	error
	UserMessage() string
}

// UserError is an adapter's failure with words for the user, e.g. a
// platform's refusal of a picture and what to do about it.
type UserError struct {
	Err     error
	Message string
}

func (e *UserError) Error() string { return e.Err.Error() }

func (e *UserError) Unwrap() error { return e.Err }

// UserMessage is what the user is told.
func (e *UserError) UserMessage() string { return e.Message }

// Picture is a picture to post.
type Picture struct {
	Name        string // file name, e.g. "arkbot-1733600000-1.png"
	ContentType string // image/png, image/jpeg…
	Data        []byte
}

// ImageSettings configure /image.
type ImageSettings struct {
	Model     string // Ark image model ID (Seedream) or endpoint ID
	Size      string // "2K", "2048x2048"…; "" is the model's default
	Watermark bool   // Ark marks the pictures as AI-made
	// Sequential > 1 lets the model make up to that many pictures for one
	// prompt.
	Sequential int
	// Edit is true when the model takes pictures to change
	// (image-to-image): an attached picture, or the thread's latest.
	Edit bool
	// DailyImages is the per-user daily limit on this model (0: none), on
	// top of Limits.DailyImages.
	DailyImages int64
}

// WithImages enables /image: pictures made by p with settings s.
func WithImages(p Painter, s ImageSettings) Option {
	return func(e *Engine) { e.painter, e.pictures = p, s }
}

// Messages and frames of /image.
const (
	drawingText     = "🎨 Drawing…"
	drawnText       = drawingText + " done."
	msgNoImages     = "Pictures are not enabled here: an operator must set images.model in config.yaml."
	msgNoImagesHere = "I can't post pictures here."
	msgRetryPicture = "The latest answer here is a picture: to draw another, use /image again."
	msgImageUsage   = "Tell me what to draw: `/image a lighthouse at dawn, watercolour`. Attach a picture (or use /image in the thread of one I made) to change it."
	// pictureFresh is how long Ark's result URL is trusted for an edit;
	// Ark keeps it about a day.
	pictureFresh = 20 * time.Hour
	// sendPicturesTimeout bounds posting the pictures (budget waits,
	// uploads).
	sendPicturesTimeout = 2 * time.Minute
)

// image answers /image: it makes pictures from prompt, or edits the
// attached picture or the thread's latest one, and posts them through r.
// It holds the thread's lock like an answer does, so /stop and a
// shutdown end it too, and saves the prompt and the files made.
func (e *Engine) image(ctx context.Context, log *slog.Logger, m Message, r Reply, adm Admission, prompt string, started func()) (err error) {
	ir, can := r.(ImageReply)
	size, prompt := imageSize(prompt)
	refusal := ""
	switch {
	case e.painter == nil:
		refusal = msgNoImages
	case !can:
		refusal = msgNoImagesHere
	case prompt == "":
		refusal = msgImageUsage
	}
	if refusal != "" {
		e.release(ctx, log, adm.Thread)
		metrics.Messages.WithLabelValues(m.Platform, "refused").Inc()
		metrics.Images.WithLabelValues(m.Platform, e.pictures.Model, "refused").Inc()
		return r.Notice(ctx, refusal)
	}
	log = log.With("image_model", e.pictures.Model)
	a := e.newRun(ctx, log, m, r)
	defer a.end()
	defer a.releaseThread()
	defer a.recoverInto(&err)
	if err := a.takeThread(adm); err != nil {
		return errors.Join(err, a.finish(a.lockFailure(err)))
	}
	metrics.Messages.WithLabelValues(m.Platform, "image").Inc()
	if a.m.ResolveName != nil {
		a.m.User.Name = a.m.ResolveName()
	}
	p := pictureRun{run: a, ir: ir, prompt: prompt, size: size}
	f, outcome := p.draw(started)
	metrics.Images.WithLabelValues(m.Platform, e.pictures.Model, outcome).Inc()
	a.log.Info("drew", "outcome", outcome, "took", e.now().Sub(a.start).Round(time.Millisecond))
	return a.finish(f)
}

// pictureRun is one /image in progress.
type pictureRun struct {
	*run
	ir     ImageReply
	prompt string
	size   string // asked for with "size:…"; "" for the default
}

// sizeArg matches a size /image takes: 1K–4K or WIDTHxHEIGHT.
var sizeArg = regexp.MustCompile(`^(?i:[1-4]K|[1-9][0-9]{2,4}x[1-9][0-9]{2,4})$`)

// imageSize reads an optional leading "size:<size>" (Discord's size
// option, or typed) from /image's argument.
func imageSize(arg string) (size, prompt string) {
	arg = strings.TrimSpace(arg)
	first, rest, _ := strings.Cut(arg, " ")
	if s, ok := strings.CutPrefix(first, "size:"); ok && sizeArg.MatchString(s) {
		if s = strings.ToLower(s); strings.HasSuffix(s, "k") {
			s = strings.ToUpper(s)
		}
		return s, strings.TrimSpace(rest)
	}
	return "", arg
}

// draw makes, posts and saves the pictures; it returns the final frame
// and the outcome for metrics.
func (p *pictureRun) draw(started func()) (Frame, string) {
	e, m := p.e, &p.m
	shown := false // the drawing status
	frame := func(outcome Outcome, note string) Frame {
		text := ""
		switch {
		case outcome == OutcomeDone:
			text = drawnText
		case shown:
			text = drawingText
		}
		return Frame{Text: text, Model: e.pictures.Model, Final: true, Outcome: outcome, Note: note}
	}
	day := e.now()
	limitAll, limitModel := e.limits.DailyImages, e.pictures.DailyImages
	if m.User.Admin {
		limitAll, limitModel = 0, 0
	}
	used, err := e.store.ReserveImages(p.actx, m.userKey(), e.pictures.Model, day, limitAll, limitModel)
	switch {
	case err != nil && p.actx.Err() != nil:
		return p.failed(err, frame)
	case err != nil:
		metrics.RedisErrors.WithLabelValues("images").Inc()
		p.log.Error("counting pictures failed", "err", err)
		return frame(OutcomeFailed, msgMemoryDown), "failed"
	case !used.Allowed:
		metrics.Messages.WithLabelValues(m.Platform, "limited").Inc()
		return frame(OutcomeFailed, used.refusal(limitAll, limitModel)), "limited"
	}
	refund := func() {
		if err := e.store.CountImages(context.WithoutCancel(p.actx), m.userKey(), e.pictures.Model, day, -1); err != nil {
			p.log.Warn("refunding a picture failed", "err", err)
		}
	}
	if err := protect(func() error { return p.r.Render(p.actx, Frame{Text: drawingText, Model: e.pictures.Model}) }); err != nil {
		if _, ok := errors.AsType[*panicError](err); ok {
			panic(err)
		}
		p.log.Warn("showing the drawing status failed", "err", err)
	}
	shown = true

	req := arkclient.ImageRequest{Model: e.pictures.Model, Prompt: p.prompt, Size: e.pictures.Size,
		Watermark: e.pictures.Watermark, MaxImages: e.pictures.Sequential}
	var notes []string
	if e.pictures.Edit {
		for _, img := range m.Images {
			req.Images = append(req.Images, img.URL)
		}
		if len(req.Images) == 0 {
			if last, ok := lastPicture(p.thread.Turns, e.now()); ok {
				req.Images = []string{last}
			}
		}
		if len(req.Images) > 0 {
			req.Size = "adaptive"
		}
	} else if len(m.Images) > 0 {
		notes = append(notes, "This picture model can't change pictures, so I drew a new one from your words.")
	}
	if p.size != "" {
		req.Size = p.size
	}
	res, err := e.painter.Generate(arkclient.WithRequestSent(p.actx, started), req)
	if err != nil {
		refund()
		return p.failed(err, frame)
	}
	if extra := int64(len(res.Pictures) - 1); extra > 0 {
		if err := e.store.CountImages(context.WithoutCancel(p.actx), m.userKey(), e.pictures.Model, day, extra); err != nil {
			p.log.Warn("counting pictures failed", "err", err)
		}
	}
	if res.Failed > 0 {
		notes = append(notes, fmt.Sprintf("Ark could not make %d more picture(s) (each failed on its own, by moderation for instance).", res.Failed))
	}
	pics := make([]Picture, len(res.Pictures))
	for i, r := range res.Pictures {
		pics[i] = Picture{Name: fmt.Sprintf("arkbot-%d-%d%s", e.now().Unix(), i+1, extension(r.ContentType)), ContentType: r.ContentType, Data: r.Data}
	}
	var refs []string
	sctx, cancel := context.WithTimeout(p.actx, sendPicturesTimeout)
	err = protect(func() (err error) { refs, err = p.ir.SendPictures(sctx, p.prompt, pics); return err })
	cancel()
	if _, ok := errors.AsType[*panicError](err); ok {
		panic(err)
	}
	if err != nil {
		if p.actx.Err() != nil {
			return p.failed(err, frame)
		}
		p.log.Warn("posting the pictures failed", "err", err)
		note := "I made the picture but couldn't post it here. Please try again."
		if um, ok := errors.AsType[userError](err); ok {
			note = "I made the picture but couldn't post it: " + um.UserMessage()
		}
		return frame(OutcomeFailed, note), "failed"
	}
	if saveErr := p.save(len(req.Images) > 0, res, refs); saveErr != nil {
		notes = append(notes, "I couldn't save this to memory, so I won't remember the picture in this conversation.")
	}
	return frame(OutcomeDone, strings.Join(notes, " ")), "done"
}

// failed is the final frame and outcome of a /image that failed with err.
func (p *pictureRun) failed(err error, frame func(Outcome, string) Frame) (Frame, string) {
	if p.actx.Err() != nil {
		cause := context.Cause(p.actx)
		if errors.Is(cause, errStopped) {
			return frame(OutcomeStopped, interruptNote(cause)), "interrupted"
		}
		return frame(OutcomeInterrupted, interruptNote(cause)), "interrupted"
	}
	var aerr *arkclient.Error
	if !errors.As(err, &aerr) {
		p.log.Error("drawing failed", "err", err)
		return frame(OutcomeFailed, "Something went wrong while I was drawing. Please try again."), "failed"
	}
	p.log.Warn("ark error", "code", aerr.Code, "status", aerr.Status, "request_id", aerr.RequestID, "message", aerr.Message)
	if aerr.Moderated() {
		return frame(OutcomeFiltered, aerr.UserMessage()), "filtered"
	}
	return frame(OutcomeFailed, aerr.UserMessage()), "failed"
}

// save records the prompt and the files made in the thread's memory,
// releasing its lock.
func (p *pictureRun) save(edit bool, res *arkclient.ImageResult, refs []string) error {
	p.stopRenew()
	e := p.e
	now := e.now()
	what := fmt.Sprintf("Made %d picture(s)", len(res.Pictures))
	if edit {
		what = "Changed the picture"
	}
	answer := fmt.Sprintf("[%s with the image model %s as this prompt asked; posted here as: %s]",
		what, e.pictures.Model, strings.Join(refs, ", "))
	question := "/image " + p.prompt
	turns := []Turn{
		{ID: p.m.ID, Role: "user", Text: question, User: p.m.User.Name, Tokens: estimateTokens(question), Time: p.m.Time.Unix()},
		{Role: "assistant", Text: answer, Model: e.pictures.Model, Tokens: estimateTokens(answer), Time: now.Unix(),
			Picture: res.Pictures[len(res.Pictures)-1].URL},
	}
	err := p.thread.Save(context.WithoutCancel(p.ctx), turns, Usage{User: p.m.userKey(), Model: e.pictures.Model}, now)
	if errors.Is(err, ErrUnconfirmed) {
		p.log.Warn("no replica confirmed the saved turn; a failover now could lose it", "err", err)
		err = nil
	}
	if err != nil {
		metrics.RedisErrors.WithLabelValues("save").Inc()
		p.log.Error("saving the turn failed", "err", err)
		return err
	}
	p.saved = true
	return nil
}

// lastPicture is the Ark URL of the thread's latest picture, when the
// thread's latest turn made it and the URL is still fresh.
func lastPicture(turns []Turn, now time.Time) (string, bool) {
	if len(turns) == 0 {
		return "", false
	}
	t := turns[len(turns)-1]
	if t.Role != "assistant" || t.Picture == "" || now.Sub(time.Unix(t.Time, 0)) > pictureFresh {
		return "", false
	}
	return t.Picture, true
}

// isImageCommand reports whether a saved question was an /image.
func isImageCommand(text string) bool {
	c, ok := ParseCommand(text)
	return ok && c.Name == CmdImage
}

// extension is the file name extension of a picture's content type.
func extension(contentType string) string {
	switch contentType {
	case "image/jpeg":
		return ".jpg"
	case "image/webp":
		return ".webp"
	case "image/gif":
		return ".gif"
	}
	return ".png"
}

// imageUsage is /usage's line about pictures, "" when none are made here.
func (e *Engine) imageUsage(ctx context.Context, m Message) string {
	if e.painter == nil {
		return ""
	}
	all, model, err := e.store.ImagesToday(ctx, m.userKey(), e.pictures.Model, e.now())
	if err != nil {
		e.log.Warn("reading picture counts failed", "err", err)
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Pictures today: **%d**", all)
	if q := e.limits.DailyImages; q > 0 && !m.User.Admin {
		fmt.Fprintf(&b, " of %d", q)
	}
	if q := e.pictures.DailyImages; q > 0 && !m.User.Admin {
		fmt.Fprintf(&b, " (%s: %d of %d)", e.pictures.Model, model, q)
	}
	b.WriteString(".\n")
	return b.String()
}

// ImageCount is what ReserveImages found and did.
type ImageCount struct {
	Allowed    bool
	All, Model int64 // the user's pictures today, all image models and this one (with the reserved one when Allowed)
}

// refusal says which limit a refused reservation hit.
func (c ImageCount) refusal(limitAll, limitModel int64) string {
	if limitAll > 0 && c.All >= limitAll {
		return fmt.Sprintf("You've made your %d pictures for today. The count resets at 00:00 UTC; /usage shows where you stand.", limitAll)
	}
	return fmt.Sprintf("You've made your %d pictures for today with this model. The count resets at 00:00 UTC; /usage shows where you stand.", limitModel)
}

// imagesKey counts a user's pictures on a UTC day, all image models
// (model "") or one. Both keys share the user's hash tag.
func (s *Store) imagesKey(user, day, model string) string {
	if model == "" {
		return s.key("images", user, day)
	}
	return s.key("images", user, day+":"+model)
}

// reserveImagesScript counts one picture (KEYS[1] all, KEYS[2] the
// model) unless that would pass a limit (ARGV[1], ARGV[2]; 0: none); it
// returns {allowed, all, model}.
var reserveImagesScript = redis.NewScript(`
local all = tonumber(redis.call("GET", KEYS[1]) or "0")
local model = tonumber(redis.call("GET", KEYS[2]) or "0")
local la, lm = tonumber(ARGV[1]), tonumber(ARGV[2])
if (la > 0 and all >= la) or (lm > 0 and model >= lm) then return {0, all, model} end
for i = 1, 2 do
  redis.call("INCR", KEYS[i])
  redis.call("PEXPIRE", KEYS[i], ARGV[3])
end
return {1, all + 1, model + 1}
`)

// imagesTTL keeps a day's picture counts past the day's end.
const imagesTTL = 48 * time.Hour

// ReserveImages counts one picture for user (a user key) on model today,
// unless the user already made limitAll pictures today or limitModel with
// that model (0: no limit).
func (s *Store) ReserveImages(ctx context.Context, user, model string, now time.Time, limitAll, limitModel int64) (ImageCount, error) {
	day := Day(now)
	res, err := reserveImagesScript.Run(ctx, s.rdb, []string{s.imagesKey(user, day, ""), s.imagesKey(user, day, model)},
		limitAll, limitModel, imagesTTL.Milliseconds()).Int64Slice()
	if err != nil {
		return ImageCount{}, fmt.Errorf("reserve pictures: %w", err)
	}
	return ImageCount{Allowed: res[0] == 1, All: res[1], Model: res[2]}, nil
}

// CountImages adds n (negative: a refund) to user's pictures today.
func (s *Store) CountImages(ctx context.Context, user, model string, now time.Time, n int64) error {
	day := Day(now)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range []string{s.imagesKey(user, day, ""), s.imagesKey(user, day, model)} {
			p.IncrBy(ctx, k, n)
			p.PExpire(ctx, k, imagesTTL)
		}
		return nil
	})
	return err
}

// ImagesToday returns user's pictures today, all image models and model.
func (s *Store) ImagesToday(ctx context.Context, user, model string, now time.Time) (all, byModel int64, err error) {
	day := Day(now)
	vals, err := s.rdb.MGet(ctx, s.imagesKey(user, day, ""), s.imagesKey(user, day, model)).Result()
	if err != nil {
		return 0, 0, err
	}
	n := make([]int64, 2)
	for i, v := range vals {
		str, _ := v.(string)
		n[i], _ = strconv.ParseInt(str, 10, 64)
	}
	return n[0], n[1], nil
}
